#ifndef FS_NOTIFIER_H
#define FS_NOTIFIER_H
#include "fs/codec.h"
#include "fs/config.h"

/* The wishlist watcher (wishlist_watch.c): follows inventory.events and, when a wished
 * product's sale opens or it is restocked, records one notice per member and occurrence
 * and writes the notification into the outbox, in one PostgreSQL transaction. Runs on its
 * own thread until *stop. */
typedef struct {
    const fs_common_config *cfg;
    const fs_codec *codec;
    volatile int *stop;
    long open_window_s; /* a sale that opened longer ago than this is not announced */
} wishlist_watch;

void *wishlist_watch_main(void *arg);

#endif
