/* Versioned migrations of the PostgreSQL read model, applied in order at projector start
 * under an advisory lock; schema_version records the highest applied. Append only: a
 * released migration is never edited. */
#include "pg_schema.h"

#include "fs/db.h"
#include "fs/log.h"

#include <stdio.h>
#include <stdlib.h>

static const char *const migrations[] = {
    /* 1: products, orders and their history, payments, consumed offsets */
    "CREATE TABLE products ("
    "  product_id text PRIMARY KEY, name text NOT NULL, description text NOT NULL DEFAULT '',"
    "  price bigint NOT NULL, currency text NOT NULL DEFAULT 'KRW',"
    "  stock integer NOT NULL, available integer NOT NULL, reserved integer NOT NULL DEFAULT 0,"
    "  sold integer NOT NULL DEFAULT 0, sale_starts_at timestamptz NOT NULL,"
    "  sale_ends_at timestamptz, per_user_limit integer NOT NULL DEFAULT 0,"
    "  paused boolean NOT NULL DEFAULT false, updated_at timestamptz NOT NULL);"
    "CREATE TABLE orders ("
    "  order_id text PRIMARY KEY, member_id text NOT NULL, status text NOT NULL,"
    "  reason text NOT NULL DEFAULT '', amount bigint NOT NULL DEFAULT 0, pay_by timestamptz,"
    "  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);"
    "CREATE INDEX orders_member_created ON orders (member_id, created_at DESC, order_id DESC);"
    "CREATE TABLE order_items ("
    "  order_id text NOT NULL, line integer NOT NULL, product_id text NOT NULL,"
    "  quantity integer NOT NULL, unit_price bigint NOT NULL DEFAULT 0,"
    "  state text NOT NULL DEFAULT '', PRIMARY KEY (order_id, line));"
    "CREATE TABLE order_status_history ("
    "  order_id text NOT NULL, status text NOT NULL, previous text NOT NULL,"
    "  reason text NOT NULL DEFAULT '', at timestamptz NOT NULL,"
    "  source_partition integer NOT NULL, source_offset bigint NOT NULL,"
    "  PRIMARY KEY (source_partition, source_offset));"
    "CREATE INDEX order_status_history_order ON order_status_history (order_id, at);"
    "CREATE TABLE payments ("
    "  order_id text NOT NULL, attempt integer NOT NULL, kind text NOT NULL,"
    "  amount bigint NOT NULL, payment_id text NOT NULL DEFAULT '', reason text NOT NULL DEFAULT '',"
    "  at timestamptz NOT NULL, source_partition integer NOT NULL, source_offset bigint NOT NULL,"
    "  PRIMARY KEY (source_partition, source_offset));"
    "CREATE INDEX payments_order ON payments (order_id);"
    "CREATE TABLE projector_offsets ("
    "  projector text NOT NULL, topic text NOT NULL, partition integer NOT NULL,"
    "  next_offset bigint NOT NULL, PRIMARY KEY (projector, topic, partition));",
    /* 2: freshness: a heartbeat and the last batch's projection lag per projector */
    "CREATE TABLE projector_status ("
    "  projector text PRIMARY KEY, heartbeat timestamptz NOT NULL, lag_ms bigint NOT NULL);",
    /* 3: room on each page for an order's and a line's next versions. Every order row is
     * inserted from its decision and updated by the saga's snapshots moments later; on pages
     * filled to the brim 95 % of those updates were not HOT (each one a new entry in every
     * index of the table), though none changes an indexed column. Half a page free kept
     * 99-100 % of them HOT with the whole lifecycle (three updates per order); 70 % full
     * kept 88 % (perf/RESULTS.md, "The read models' writes per order"). New pages only:
     * existing ones keep their layout. */
    "ALTER TABLE orders SET (fillfactor = 50);"
    "ALTER TABLE order_items SET (fillfactor = 50);",
};

int pg_schema_migrate(PGconn *c, fs_err *err)
{
    return fs_pg_migrate(c, "schema_version", 824717, migrations,
                         (int)(sizeof migrations / sizeof migrations[0]), err);
}
