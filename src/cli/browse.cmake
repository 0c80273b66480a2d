# `pexi browse`: the command, and its guest half (guest/browser/browse.mjs) compiled in as a raw
# string literal, regenerated whenever the script changes (written into the guest at run time,
# so the image does not change with it).
set(PEXI_BROWSE_SCRIPT ${PROJECT_SOURCE_DIR}/guest/browser/browse.mjs)
file(READ ${PEXI_BROWSE_SCRIPT} PEXI_BROWSE_SCRIPT_TEXT)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${PEXI_BROWSE_SCRIPT})
configure_file(${CMAKE_CURRENT_SOURCE_DIR}/browse_script.cpp.in
               ${CMAKE_CURRENT_BINARY_DIR}/browse_script.cpp @ONLY)
target_sources(pexi PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cmd_browse.cpp
                            ${CMAKE_CURRENT_BINARY_DIR}/browse_script.cpp)
