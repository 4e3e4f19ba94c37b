# Compiler warnings for every Wren target. Warnings are errors when WREN_WERROR is on
# (the default under CI, where the environment variable CI is set).
if(DEFINED ENV{CI})
  set(_wren_werror_default ON)
else()
  set(_wren_werror_default OFF)
endif()
option(WREN_WERROR "Treat compiler warnings as errors" ${_wren_werror_default})

add_library(wren_warnings INTERFACE)
target_compile_options(wren_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor
                            -Wcast-align -Woverloaded-virtual -Wnull-dereference
                            -Wimplicit-fallthrough>
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${WREN_WERROR}>>:-Werror>
  # GCC 12 reports -Wrestrict false positives inside std::string's operator+ at -O2
  # (GCC bug 105329); the warning stays on for other compilers.
  $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<CXX_COMPILER_ID:GNU>>:-Wno-restrict>
  $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra>
  $<$<AND:$<COMPILE_LANGUAGE:CUDA>,$<BOOL:${WREN_WERROR}>>:-Werror=all-warnings>)

# ptxas statistics (registers, spills, shared memory per kernel) in the build log; on in CI so
# that register spills are visible there.
option(WREN_PTXAS_VERBOSE "Print ptxas resource usage for every CUDA kernel" ${_wren_werror_default})
if(WREN_PTXAS_VERBOSE)
  target_compile_options(wren_warnings INTERFACE $<$<COMPILE_LANGUAGE:CUDA>:-Xptxas=-v>)
endif()

# AddressSanitizer + UndefinedBehaviorSanitizer, for the `asan` preset.
option(WREN_SANITIZE "Build with AddressSanitizer and UBSan" OFF)
if(WREN_SANITIZE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-sanitize-recover=all>
                      $<$<COMPILE_LANGUAGE:CXX>:-fno-omit-frame-pointer>)
  add_link_options(-fsanitize=address,undefined)
endif()
