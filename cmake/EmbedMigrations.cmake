# cmake -DDIR=<schema dir> -DOUT=<file.cc> -P EmbedMigrations.cmake
# Writes a C++ file defining cloudflux::service::EmbeddedMigrations() with
# every NNN_*.sql file of DIR embedded, so that a service binary carries its
# own schema and needs no files at run time.
file(GLOB files "${DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(name ${f} NAME)
  if(NOT name MATCHES "^([0-9][0-9][0-9]+)_.*\\.sql$")
    message(FATAL_ERROR "migration ${name} is not named NNN_description.sql")
  endif()
  string(REGEX REPLACE "^0*([0-9]+)_.*" "\\1" version "${name}")
  file(READ ${f} sql)
  string(APPEND body "      {${version}, \"${name}\", R\"cfsql(${sql})cfsql\"},\n")
endforeach()
file(WRITE "${OUT}.tmp" "// Generated from ${DIR}; do not edit.
#include <vector>
#include \"cloudflux/service/service_app.h\"
namespace cloudflux::service {
std::vector<cloudflux::db::Migration> EmbeddedMigrations() {
  return {
${body}  };
}
}  // namespace cloudflux::service
")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
