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
# Builds services/<NAME>/main.cpp (+ src/*.cc) into cloudflux-<NAME>, with the
# SQL migrations of services/<NAME>/schema embedded as
# cloudflux::service::EmbeddedMigrations().
function(cloudflux_service name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  set(schema_dir ${CMAKE_CURRENT_SOURCE_DIR}/schema)
  file(GLOB sql CONFIGURE_DEPENDS ${schema_dir}/*.sql)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/embedded_migrations.cc)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DDIR=${schema_dir} -DOUT=${out}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    DEPENDS ${sql} ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    COMMENT "embedding ${name} migrations")
  file(GLOB srcs CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc)
  add_executable(cloudflux-${name} main.cpp ${srcs} ${out})
  target_link_libraries(cloudflux-${name} PRIVATE cloudflux::service ${ARG_DEPS})
  target_include_directories(cloudflux-${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  install(TARGETS cloudflux-${name} RUNTIME DESTINATION bin)
endfunction()
