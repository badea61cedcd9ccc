/* Inventory commands and events <-> Avro records of schemas/inventory/.
 * Encoding picks the schema by the command/event type; decoding takes the record and its
 * schema short name (the event-type). Returns 0 or -1 with *err (FS_ERR_INVALID for a
 * record that is not a known inventory command/event or lacks a required field).
 * Thread-safe given a shared, set-up fs_codec. */
#ifndef FLASHSALE_INVENTORY_CODEC_H
#define FLASHSALE_INVENTORY_CODEC_H
#include "flashsale/inventory.h"

#include "fs/codec.h"

int inv_command_encode(const fs_codec *codec, const inv_command *c, void **buf, size_t *len,
                       fs_err *err);
int inv_command_decode(avro_value_t *rec, const char *type_name, inv_command *c, fs_err *err);
int inv_event_encode(const fs_codec *codec, const inv_event *e, void **buf, size_t *len,
                     fs_err *err);
int inv_event_decode(avro_value_t *rec, const char *type_name, inv_event *e, fs_err *err);
/* Decodes a whole single-object encoded record (both steps). */
int inv_event_decode_bytes(const fs_codec *codec, const void *buf, size_t len, inv_event *e,
                           fs_err *err);
int inv_command_decode_bytes(const fs_codec *codec, const void *buf, size_t len, inv_command *c,
                             fs_err *err);

/* Every field name the codec reads or writes, NULL-terminated (for the test that checks
 * them against the schemas). */
const char *const *inv_codec_fields(void);

#endif
