# cmake -DIN=file -DOUT=file.c -DNAME=symbol -P embed_file.cmake : writes a C file holding IN
# as `const char NAME[]` (NUL-terminated) and `const size_t NAME_len` (without the NUL).
file(READ ${IN} hex HEX)
string(LENGTH "${hex}" hexlen)
math(EXPR len "${hexlen} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
set(body "/* Generated from ${IN} at build time. Do not edit. */\n#include <stddef.h>\n\n")
string(APPEND body "const char ${NAME}[] = {${hex}0x00};\nconst size_t ${NAME}_len = ${len};\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
