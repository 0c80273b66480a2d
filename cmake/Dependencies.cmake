# Third-party dependencies, all from Debian bookworm packages (scripts/install-deps).
find_package(Threads REQUIRED)
find_package(Boost 1.81.0 EXACT CONFIG REQUIRED COMPONENTS json url system)
find_package(OpenSSL 3 REQUIRED)
find_package(CURL REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(tomlplusplus CONFIG REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(IDN2 REQUIRED IMPORTED_TARGET libidn2)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
if(BUILD_TESTING)
  find_package(GTest REQUIRED)
endif()
if(PEXI_BENCH AND NOT PEXI_FUZZ)
  find_package(benchmark REQUIRED)
endif()

# Boost headers are third-party: keep their warnings out of -Werror.
add_library(pexi_boost INTERFACE)
target_link_libraries(pexi_boost INTERFACE Boost::headers Boost::json Boost::url Boost::system)
target_compile_definitions(pexi_boost INTERFACE
  BOOST_ASIO_NO_DEPRECATED
  BOOST_ASIO_DISABLE_BOOST_COROUTINE
  BOOST_JSON_NO_LIB BOOST_URL_NO_LIB)
