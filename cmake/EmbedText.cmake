# cmake -DIN=<file> -DOUT=<file.cc> -DSYMBOL=<name> -P EmbedText.cmake
# Writes a C++ file defining `extern const char cloudflux::<SYMBOL>[]` with
# the contents of IN (a data file compiled in as a default).
file(READ "${IN}" text)
file(WRITE "${OUT}.tmp" "// Generated from ${IN}; do not edit.
namespace cloudflux {
extern const char ${SYMBOL}[];
const char ${SYMBOL}[] = R\"cftext(${text})cftext\";
}  // namespace cloudflux
")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
