# Generate a C++ header from ptdit_export/ops/ops.json, the one description of PT-DiT's custom
# ops shared by the ONNX exporter (Python) and the TensorRT plugins (C++).
#
#   ptdit_generate_ops_header(JSON <ops.json> OUTPUT <header>)
#
# For every op the header gets a namespace named after the op (e.g. ptdit::ops::PTDiTProxyPool)
# holding kName, kVersion, one kAttr_<name> constant per attribute, one kInput_<name> index per
# input, the allowed dtypes of each input, and kAttributes / kInputs tables; ptdit::ops::kOps
# lists all ops. Renaming an attribute in ops.json therefore breaks the plugin build instead of
# silently producing a plugin the ONNX parser cannot feed.

function(_ptdit_json_get out json)
  string(JSON value ERROR_VARIABLE err GET "${json}" ${ARGN})
  if(err)
    message(FATAL_ERROR "ops.json: cannot read '${ARGN}': ${err}")
  endif()
  set(${out} "${value}" PARENT_SCOPE)
endfunction()

function(_ptdit_check_identifier what value)
  if(NOT value MATCHES "^[A-Za-z_][A-Za-z0-9_]*$")
    message(FATAL_ERROR "ops.json: ${what} '${value}' is not a valid C++ identifier; "
                        "rename it in ptdit_export/ops/ops.json")
  endif()
endfunction()

function(_ptdit_dtype_enum out dtype)
  if(dtype STREQUAL "float32")
    set(${out} "DType::kFloat32" PARENT_SCOPE)
  elseif(dtype STREQUAL "float16")
    set(${out} "DType::kFloat16" PARENT_SCOPE)
  elseif(dtype STREQUAL "bfloat16")
    set(${out} "DType::kBFloat16" PARENT_SCOPE)
  elseif(dtype STREQUAL "int32")
    set(${out} "DType::kInt32" PARENT_SCOPE)
  else()
    message(FATAL_ERROR "ops.json: dtype '${dtype}' has no C++ mapping; add it to "
                        "plugins/cmake/GenerateOpsHeader.cmake (and the plugins)")
  endif()
endfunction()

function(ptdit_generate_ops_header)
  cmake_parse_arguments(ARG "" "JSON;OUTPUT" "" ${ARGN})
  file(READ "${ARG_JSON}" json)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${ARG_JSON}")

  _ptdit_json_get(domain "${json}" domain)
  _ptdit_json_get(plugin_namespace "${json}" plugin_namespace)
  string(JSON n_ops LENGTH "${json}" ops)

  set(body "")
  set(op_table "")
  math(EXPR last_op "${n_ops} - 1")
  foreach(i RANGE ${last_op})
    _ptdit_json_get(name "${json}" ops ${i} name)
    _ptdit_json_get(version "${json}" ops ${i} version)
    _ptdit_check_identifier("op name" "${name}")

    # inputs: name, index, allowed dtypes
    set(inputs_src "")
    set(input_rows "")
    string(JSON n_in LENGTH "${json}" ops ${i} inputs)
    math(EXPR last_in "${n_in} - 1")
    foreach(j RANGE ${last_in})
      _ptdit_json_get(in_name "${json}" ops ${i} inputs ${j} name)
      _ptdit_check_identifier("input name of ${name}" "${in_name}")
      string(JSON n_dt LENGTH "${json}" ops ${i} inputs ${j} dtypes)
      math(EXPR last_dt "${n_dt} - 1")
      set(dtypes "")
      foreach(k RANGE ${last_dt})
        _ptdit_json_get(dt "${json}" ops ${i} inputs ${j} dtypes ${k})
        _ptdit_dtype_enum(dt_enum "${dt}")
        list(APPEND dtypes "${dt_enum}")
      endforeach()
      list(JOIN dtypes ", " dtypes)
      string(APPEND inputs_src "inline constexpr int32_t kInput_${in_name} = ${j};\n")
      string(APPEND inputs_src "inline constexpr DType kDtypes_${in_name}[] = {${dtypes}};\n")
      string(APPEND input_rows "    {\"${in_name}\", kDtypes_${in_name}, ${n_dt}},\n")
    endforeach()

    # attributes: name, index, type, element count
    set(attrs_src "")
    set(attr_rows "")
    string(JSON n_attr LENGTH "${json}" ops ${i} attributes)
    math(EXPR last_attr "${n_attr} - 1")
    foreach(j RANGE ${last_attr})
      _ptdit_json_get(a_name "${json}" ops ${i} attributes ${j} name)
      _ptdit_json_get(a_type "${json}" ops ${i} attributes ${j} type)
      _ptdit_check_identifier("attribute name of ${name}" "${a_name}")
      if(a_type STREQUAL "int")
        set(a_enum "AttrType::kInt")
        set(a_count 1)
      elseif(a_type STREQUAL "float")
        set(a_enum "AttrType::kFloat")
        set(a_count 1)
      elseif(a_type STREQUAL "ints")
        set(a_enum "AttrType::kInts")
        _ptdit_json_get(a_count "${json}" ops ${i} attributes ${j} count)
      else()
        message(FATAL_ERROR "ops.json: attribute ${name}.${a_name} has type '${a_type}'; "
                            "the plugins know int, ints and float")
      endif()
      string(APPEND attrs_src "inline constexpr char kAttr_${a_name}[] = \"${a_name}\";\n")
      string(APPEND attrs_src "inline constexpr int32_t kCount_${a_name} = ${a_count};\n")
      string(APPEND attr_rows "    {kAttr_${a_name}, ${a_enum}, ${a_count}},\n")
    endforeach()

    string(APPEND body
      "namespace ${name}\n{\n"
      "inline constexpr char kName[] = \"${name}\";\n"
      "inline constexpr char kVersion[] = \"${version}\";\n"
      "${inputs_src}"
      "inline constexpr int32_t kNumInputs = ${n_in};\n"
      "inline constexpr InputSpec kInputs[] = {\n${input_rows}};\n"
      "${attrs_src}"
      "inline constexpr int32_t kNumAttributes = ${n_attr};\n"
      "inline constexpr AttrSpec kAttributes[] = {\n${attr_rows}};\n"
      "} // namespace ${name}\n\n")
    string(APPEND op_table
      "    {${name}::kName, ${name}::kVersion, ${name}::kInputs, ${name}::kNumInputs, "
      "${name}::kAttributes, ${name}::kNumAttributes},\n")
  endforeach()

  set(content
"// Generated by CMake (plugins/cmake/GenerateOpsHeader.cmake) from ptdit_export/ops/ops.json.
// Do not edit: change ops.json and re-run CMake.
#pragma once

#include <cstdint>

namespace ptdit::ops
{

enum class DType : int32_t
{
    kFloat32,
    kFloat16,
    kBFloat16,
    kInt32,
};

enum class AttrType : int32_t
{
    kInt,   // ONNX INT, reaches a plugin as one int32 PluginField
    kInts,  // ONNX INTS, int32 PluginField of `count` elements
    kFloat, // ONNX FLOAT, one float32 PluginField
};

struct AttrSpec
{
    char const* name;
    AttrType type;
    int32_t count;
};

struct InputSpec
{
    char const* name;
    DType const* dtypes;
    int32_t numDtypes;
};

struct OpSpec
{
    char const* name;
    char const* version;
    InputSpec const* inputs;
    int32_t numInputs;
    AttrSpec const* attributes;
    int32_t numAttributes;
};

inline constexpr char kDomain[] = \"${domain}\";
inline constexpr char kPluginNamespace[] = \"${plugin_namespace}\";

${body}inline constexpr OpSpec kOps[] = {
${op_table}};
inline constexpr int32_t kNumOps = ${n_ops};

} // namespace ptdit::ops
")
  file(CONFIGURE OUTPUT "${ARG_OUTPUT}" CONTENT "${content}" @ONLY)
endfunction()
