# cloudflux_library(NAME SOURCES ... DEPS ... PRIVATE_DEPS ...)
# A shared-code library with public headers under include/ and private code under src/.
function(cloudflux_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(cloudflux_${name} STATIC ${ARG_SOURCES})
  add_library(cloudflux::${name} ALIAS cloudflux_${name})
  target_include_directories(cloudflux_${name}
    PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(cloudflux_${name} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# cloudflux_test(NAME SOURCES ... DEPS ... [LABELS ...])
# A GoogleTest binary registered with CTest (one CTest entry per binary keeps ctest fast).
function(cloudflux_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${ARG_TIMEOUT} LABELS "${ARG_LABELS}")
endfunction()

# cloudflux_service(NAME)
# Builds services/<NAME>/main.cpp into cloudflux-<NAME>, with the SQL
# migrations of services/<NAME>/schema embedded as
# cloudflux::service::EmbeddedMigrations(); src/*.cc become the library
# cloudflux_<NAME>_core that the binary and the service's tests link.
function(cloudflux_service name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  set(schema_dir ${CMAKE_CURRENT_SOURCE_DIR}/schema)
  file(GLOB sql CONFIGURE_DEPENDS ${schema_dir}/*.sql)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_migrations.cc)
  # The list of migrations is a dependency too: removing one regenerates the file.
  set(list_file ${CMAKE_CURRENT_BINARY_DIR}/embedded_migrations.list)
  string(REPLACE ";" "\n" sql_lines "${sql}")
  file(CONFIGURE OUTPUT ${list_file} CONTENT "${sql_lines}\n")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DDIR=${schema_dir} -DOUT=${out}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    DEPENDS ${sql} ${list_file} ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    COMMENT "embedding ${name} migrations")
  add_executable(cloudflux-${name} main.cpp ${out})
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc)
  if(srcs)
    # src/*.cc once, as cloudflux_<NAME>_core, for the binary and its tests.
    add_library(cloudflux_${name}_core STATIC ${srcs})
    target_link_libraries(cloudflux_${name}_core PUBLIC cloudflux::service ${ARG_DEPS})
    target_include_directories(cloudflux_${name}_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(cloudflux-${name} PRIVATE cloudflux_${name}_core)
  else()
    target_link_libraries(cloudflux-${name} PRIVATE cloudflux::service ${ARG_DEPS})
  endif()
  if(NOT CLOUDFLUX_SANITIZE)  # sanitizers bring their own allocator
    target_link_libraries(cloudflux-${name} PRIVATE PkgConfig::JEMALLOC)
    target_sources(cloudflux-${name} PRIVATE ${PROJECT_SOURCE_DIR}/cmake/jemalloc_options.cc)
  endif()
  install(TARGETS cloudflux-${name} RUNTIME DESTINATION bin)
endfunction()
