# Compiler flags per instruction set. The base objects target the baseline of
# the architecture (x86-64 / armv8-a) so a prebuilt binary loads on any CPU;
# only files named *_avx2.cc / *_avx512.cc get wider ISAs, and the dispatcher
# calls them after CPUID + XGETBV.

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(BNKIT_ARCH x86_64)
  set(BNKIT_BASE_FLAGS -march=x86-64 -mtune=generic)
  set(BNKIT_AVX2_FLAGS -mavx2 -mfma -mf16c)
  set(BNKIT_AVX512_FLAGS -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq
    -mprefer-vector-width=512
    # GCC 12's own reduce intrinsics trip these; they are false positives.
    -Wno-uninitialized -Wno-maybe-uninitialized)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(BNKIT_ARCH aarch64)
  set(BNKIT_BASE_FLAGS -march=armv8-a)
else()
  set(BNKIT_ARCH generic)
  set(BNKIT_BASE_FLAGS "")
endif()
# Contraction into FMA is left to the explicit V::fma calls; letting the
# compiler fuse elsewhere would make the scalar reference ISA-dependent.
list(APPEND BNKIT_BASE_FLAGS -O3 -ffp-contract=off -fno-math-errno -Wall -Wextra -Wno-unused-parameter)

# Appends to OUT_VAR the per-ISA kernel sources present for this architecture
# and gives each its own flags.
function(bnkit_collect_isa_sources OUT_VAR KERNEL_DIR)
  file(GLOB scalar_sources CONFIGURE_DEPENDS ${KERNEL_DIR}/*/*_scalar.cc)
  set(sources ${scalar_sources})
  if(BNKIT_ARCH STREQUAL "x86_64")
    file(GLOB avx2_sources CONFIGURE_DEPENDS ${KERNEL_DIR}/*/*_avx2.cc)
    file(GLOB avx512_sources CONFIGURE_DEPENDS ${KERNEL_DIR}/*/*_avx512.cc)
    set_source_files_properties(${avx2_sources} PROPERTIES COMPILE_OPTIONS "${BNKIT_AVX2_FLAGS}")
    set_source_files_properties(${avx512_sources} PROPERTIES COMPILE_OPTIONS "${BNKIT_AVX512_FLAGS}")
    list(APPEND sources ${avx2_sources} ${avx512_sources})
  elseif(BNKIT_ARCH STREQUAL "aarch64")
    file(GLOB neon_sources CONFIGURE_DEPENDS ${KERNEL_DIR}/*/*_neon.cc)
    list(APPEND sources ${neon_sources})
  endif()
  set(${OUT_VAR} ${sources} PARENT_SCOPE)
endfunction()

# Small, self-contained binaries: hidden symbols, no debug info, stripped.
function(bnkit_strip_and_harden TARGET)
  set_target_properties(${TARGET} PROPERTIES CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  if(NOT APPLE)
    target_link_options(${TARGET} PRIVATE -s -Wl,--gc-sections -Wl,-z,noexecstack)
  endif()
endfunction()
