# pexi_module(NAME SOURCES... [DEPS targets...]): one static library per src/ folder,
# exported as pexi::NAME, with the project's warnings.
function(pexi_set_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                                           -Wimplicit-fallthrough)
  if(PEXI_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  # GCC 12 reports impossible overlaps in std::string concatenation at -O2 (GCC bug 105329).
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wno-restrict)
    # With ASan, GCC 12 also reports uninitialised reads inside Boost.Beast's parser (inlined
    # boost::optional) that its flow analysis cannot rule out.
    if(PEXI_SANITIZE)
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
  endif()
endfunction()

function(pexi_module name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(pexi_${name} STATIC ${ARG_SOURCES})
  add_library(pexi::${name} ALIAS pexi_${name})
  target_include_directories(pexi_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(pexi_${name} PUBLIC ${ARG_DEPS})
  pexi_set_warnings(pexi_${name})
endfunction()
