# `pexi agent` (docs/agent.md): the command, and its pure parts (the guest's OpenClaw
# configuration, the provider URL, OpenClaw's result) as a library the unit tests link.
pexi_module(cli_agent
  SOURCES agent_setup.cpp
  DEPS pexi::config pexi_boost)
target_sources(pexi PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/cmd_agent.cpp)
target_link_libraries(pexi PRIVATE pexi::cli_agent)
