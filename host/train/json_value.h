// Reading a number from JSON into a field of a given type, for the run config
// (config_from_json) and checkpoint metadata (read_checkpoint_info). nlohmann's get<int>()
// converts a JSON float with static_cast, which is undefined behaviour when the value is out
// of the type's range ({"batch": 1e300}, found by tests/fuzz/fuzz_run_config), and wraps an
// out-of-range JSON integer silently. json_value refuses both.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace wren {

template <class T>
struct is_std_vector : std::false_type {};
template <class T>
struct is_std_vector<std::vector<T>> : std::true_type {};

// `v` as a T. An integer field (other than bool) takes a JSON integer in T's range or a float
// with an integral value in T's range; other values throw std::out_of_range naming `key` and
// the value. A vector takes an array, element by element. Everything else is nlohmann's get,
// which throws its type_error on a JSON type that does not convert.
template <class T>
T json_value(const nlohmann::json& v, const std::string& key) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (v.is_number_unsigned()) {
      const uint64_t x = v.get<uint64_t>();
      if (std::in_range<T>(x)) return static_cast<T>(x);
    } else if (v.is_number_integer()) {
      const int64_t x = v.get<int64_t>();
      if (std::in_range<T>(x)) return static_cast<T>(x);
    } else if (v.is_number_float()) {
      const double d = v.get<double>();
      // [-2^63, 2^63) holds exactly the doubles that convert to int64_t.
      if (std::trunc(d) == d && d >= -0x1p63 && d < 0x1p63 &&
          std::in_range<T>(static_cast<int64_t>(d))) {
        return static_cast<T>(static_cast<int64_t>(d));
      }
    } else {
      return v.get<T>();  // not a number: nlohmann's type_error
    }
    throw std::out_of_range("\"" + key + "\" = " + v.dump() + " is not an integer in [" +
                            std::to_string(std::numeric_limits<T>::min()) + ", " +
                            std::to_string(std::numeric_limits<T>::max()) + "]");
  } else if constexpr (is_std_vector<T>::value) {
    if (!v.is_array()) return v.get<T>();  // nlohmann's type_error
    T out;
    for (const nlohmann::json& item : v) {
      out.push_back(json_value<typename T::value_type>(item, key));
    }
    return out;
  } else {
    return v.get<T>();
  }
}

}  // namespace wren
