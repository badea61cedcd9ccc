/* Typed messages of the order, payment and notification topics, and their Avro codecs.
 * (Inventory commands and events: inventory_codec.h; the order snapshot: order.h.)
 *
 *   orders.commands    ord_command     PlaceCheckout, PayOrder, CancelOrder, RequestReturn,
 *                                      CompleteReturn
 *   orders.events      ord_rejection   OrderCommandRejected (next to OrderStatusChanged)
 *   orders.answers     ord_answer      OrderAnswered (what the API told the buyer)
 *   payments.commands  pay_command     RequestPayment, RequestRefund
 *   payments.events    pay_event       PaymentSucceeded, PaymentFailed, RefundSucceeded,
 *                                      RefundFailed
 *   notifications      fs_notification NotificationRequested
 *   members.events     mem_event       MemberRegistered, MemberVerified, MemberUpdated,
 *                                      MemberDeleted
 *
 * Encoders write every field of the schema (a field the schema lacks is an error, not
 * skipped); decoders take a record decoded by fs_codec_decode (already resolved to the
 * reader schema, so every field is there) and its schema short name, and fail with
 * FS_ERR_INVALID on a record of another type or a required field left empty.
 * Thread-safe given a shared, set-up fs_codec. */
#ifndef FLASHSALE_MESSAGES_H
#define FLASHSALE_MESSAGES_H
#include "flashsale/order.h"

#include "fs/codec.h"

#include <stdbool.h>
#include <stdint.h>

/* ---- orders.commands ------------------------------------------------------------------ */

typedef enum {
    ORD_CMD_PLACE_CHECKOUT,
    ORD_CMD_PAY,
    ORD_CMD_CANCEL,
    ORD_CMD_REQUEST_RETURN,
    ORD_CMD_COMPLETE_RETURN,
    ORD_CMD_COUNT
} ord_cmd_type;
/* Schema short name (= event-type header) of a command type; and back (-1 if none). */
const char *ord_cmd_name(ord_cmd_type t);
int ord_cmd_parse(const char *schema_name);

typedef struct {
    char product_id[ORD_ID_MAX];
    int32_t quantity;
} ord_item;

typedef struct {
    ord_cmd_type type;
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX]; /* the member; for CompleteReturn the admin (actor_id) */
    char method[32];            /* PayOrder */
    char reason[64];            /* RequestReturn (optional) */
    char idempotency_key[ORD_ID_MAX * 2]; /* PlaceCheckout (optional, "" = none) */
    bool restock;               /* CompleteReturn */
    int nitems;                 /* PlaceCheckout */
    ord_item items[ORD_MAX_LINES];
    int64_t requested_at;
} ord_command;

int ord_command_encode(const fs_codec *codec, const ord_command *c, void **buf, size_t *len,
                       fs_err *err);
int ord_command_decode(avro_value_t *rec, const char *type_name, ord_command *c, fs_err *err);

/* ---- orders.events: a member's command the saga refused -------------------------------- */

typedef struct {
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    char command_type[32]; /* the refused command's schema name */
    char code[40];         /* ORDER_NOT_FOUND, PAYMENT_IN_PROGRESS, ... */
    char status[24];       /* the order's status then ("" when there is no order) */
    int64_t occurred_at;
} ord_rejection;

int ord_rejection_encode(const fs_codec *codec, const ord_rejection *r, void **buf, size_t *len,
                         fs_err *err);
int ord_rejection_decode(avro_value_t *rec, ord_rejection *r, fs_err *err);

/* ---- orders.answers ------------------------------------------------------------------- */

typedef struct {
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    char product_id[ORD_ID_MAX];
    int32_t quantity;
    char status[16]; /* RESERVED / REJECTED / PENDING */
    char reason[32];
    int64_t pay_by;
    char source[16]; /* reply / committed / view / none */
    int32_t http_status;
    int64_t answered_at;
} ord_answer;

int ord_answer_encode(const fs_codec *codec, const ord_answer *a, void **buf, size_t *len,
                      fs_err *err);
int ord_answer_decode(avro_value_t *rec, ord_answer *a, fs_err *err);

/* ---- payments ------------------------------------------------------------------------- */

typedef enum { PAY_CMD_REQUEST_PAYMENT, PAY_CMD_REQUEST_REFUND, PAY_CMD_COUNT } pay_cmd_type;
const char *pay_cmd_name(pay_cmd_type t);
int pay_cmd_parse(const char *schema_name);

typedef struct {
    pay_cmd_type type;
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    int64_t amount;
    char method[32]; /* RequestPayment */
    char reason[32]; /* RequestRefund */
    int32_t attempt; /* RequestPayment */
    int64_t requested_at;
} pay_command;

int pay_command_encode(const fs_codec *codec, const pay_command *c, void **buf, size_t *len,
                       fs_err *err);
int pay_command_decode(avro_value_t *rec, const char *type_name, pay_command *c, fs_err *err);

typedef enum {
    PAY_EV_PAYMENT_SUCCEEDED,
    PAY_EV_PAYMENT_FAILED,
    PAY_EV_REFUND_SUCCEEDED,
    PAY_EV_REFUND_FAILED,
    PAY_EV_COUNT
} pay_event_type;
const char *pay_event_name(pay_event_type t);
int pay_event_parse(const char *schema_name);

typedef struct {
    pay_event_type type;
    char order_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    int64_t amount;
    char payment_id[ORD_ID_MAX]; /* succeeded */
    char reason[32];             /* failed */
    bool retriable;              /* PaymentFailed */
    int32_t attempt;             /* PaymentSucceeded / PaymentFailed */
    int64_t occurred_at;
} pay_event;

int pay_event_encode(const fs_codec *codec, const pay_event *e, void **buf, size_t *len,
                     fs_err *err);
int pay_event_decode(avro_value_t *rec, const char *type_name, pay_event *e, fs_err *err);

/* ---- notifications -------------------------------------------------------------------- */

#define FS_NOTIFICATION_MAX_PARAMS 8

typedef struct {
    char notification_id[ORD_ID_MAX];
    char member_id[ORD_ID_MAX];
    char kind[32];   /* ORDER_RESERVED, VERIFY_EMAIL, ... */
    char email[256]; /* "" = the notifier looks the member's address up */
    int nparams;
    struct {
        char key[32];
        char value[512]; /* a product name (up to 255 bytes) fits */
    } params[FS_NOTIFICATION_MAX_PARAMS];
    int64_t occurred_at;
} fs_notification;

/* Adds a parameter; returns -1 when full or the text does not fit. */
int fs_notification_param(fs_notification *n, const char *key, const char *value);
const char *fs_notification_get(const fs_notification *n, const char *key); /* NULL if none */
int fs_notification_encode(const fs_codec *codec, const fs_notification *n, void **buf,
                           size_t *len, fs_err *err);
int fs_notification_decode(avro_value_t *rec, fs_notification *n, fs_err *err);

/* A new notification's bytes for the outbox: a fresh id, the member, the address ("" or
 * NULL: the notifier looks it up), the kind, parameters as key/value pairs (NULL-terminated;
 * may be NULL), the time. *buf malloc'd. */
int fs_notification_new_bytes(const fs_codec *codec, const char *member_id, const char *email,
                              const char *kind, const char *const *params, int64_t at,
                              void **buf, size_t *len, fs_err *err);

/* ---- members.events ------------------------------------------------------------------- */

typedef enum {
    MEM_EV_REGISTERED,
    MEM_EV_VERIFIED,
    MEM_EV_UPDATED,
    MEM_EV_DELETED,
    MEM_EV_COUNT
} mem_event_type;
const char *mem_event_name(mem_event_type t);
int mem_event_parse(const char *schema_name);

#define MEM_MAX_FIELDS 8

typedef struct {
    mem_event_type type;
    char member_id[ORD_ID_MAX];
    char role[16]; /* MemberRegistered */
    int nfields;   /* MemberUpdated: the names of the fields changed */
    char fields[MEM_MAX_FIELDS][32];
    int64_t occurred_at;
} mem_event;

int mem_event_encode(const fs_codec *codec, const mem_event *e, void **buf, size_t *len,
                     fs_err *err);
int mem_event_decode(avro_value_t *rec, const char *type_name, mem_event *e, fs_err *err);

#endif
