# Writes OUT (a C++ source with the version text of every Loom program) from
# version_info.cc.in, at build time so that the git commit follows new commits.
# configure_file rewrites OUT only when its text changes: no rebuild otherwise.
#   cmake -DSOURCE_DIR=... -DIN=... -DOUT=... -DLOOM_VERSION=... -DLOOM_BUILD=... -P version.cmake
set(LOOM_COMMIT "unknown")
find_package(Git QUIET)
if(GIT_FOUND)
  execute_process(COMMAND ${GIT_EXECUTABLE} -c safe.directory=* rev-parse --short=12 HEAD
                  WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE commit
                  RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0 AND commit)
    set(LOOM_COMMIT ${commit})
    execute_process(COMMAND ${GIT_EXECUTABLE} -c safe.directory=* status --porcelain
                            --untracked-files=no
                    WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE dirty ERROR_QUIET)
    if(dirty)
      string(APPEND LOOM_COMMIT "-modified")
    endif()
  endif()
endif()
configure_file(${IN} ${OUT} @ONLY)
