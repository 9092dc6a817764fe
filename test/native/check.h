// The few lines of test harness the native test programs share: a counted
// check and the closing "N passed, N failed" line that CI reads.
#pragma once
#include <cstdio>
#include <string>

namespace bnkit::testing {

inline int passed = 0;
inline int failed = 0;

inline void check(bool ok, const std::string& what) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAIL %s\n", what.c_str());
  }
}

inline int finish() {
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}

}  // namespace bnkit::testing
