# Every third-party dependency is found here, once, and exposed as an imported target.
find_package(Threads REQUIRED)
find_package(OpenSSL REQUIRED)
find_package(PkgConfig REQUIRED)
find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)
find_package(absl CONFIG REQUIRED)
find_package(spdlog CONFIG REQUIRED)
find_package(prometheus-cpp CONFIG REQUIRED)
find_package(GTest CONFIG)
find_package(benchmark CONFIG)

pkg_check_modules(PQXX REQUIRED IMPORTED_TARGET libpqxx)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET rdkafka)
pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET hiredis)
# The service binaries' allocator: jemalloc's per-thread caches and arenas cost
# far less than glibc malloc's locking and trimming under many handler threads.
pkg_check_modules(JEMALLOC REQUIRED IMPORTED_TARGET jemalloc)

find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
find_package(CURL REQUIRED)
pkg_check_modules(LIBXML2 REQUIRED IMPORTED_TARGET libxml-2.0)
