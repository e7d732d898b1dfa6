// JSON Schema (draft 2020-12, the subset structured-output clients send: OpenAI response_format json_schema,
// llama.cpp's json_schema) compiled into GBNF text for grammar.h. Behaviour follows the intent of llama.cpp's
// json-schema-to-grammar (grammars/README.md) with stricter refusals: a keyword the grammar cannot enforce is an
// error naming it, never silently dropped.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/status.h"

namespace herd::grammar {

// Compiles `schema` into GBNF (llama.cpp's grammar syntax, parsed by ParseGbnf) whose rule `root` matches JSON
// texts (UTF-8 bytes) that are valid instances of the schema. Every text the grammar matches is a valid instance;
// the grammar deliberately matches only a canonical subset of the instances (below), which is what a decoder needs.
// The result is deterministic: the same schema gives the same text, with rule names derived from the schema path
// (`address-street`, `Node-children`), and shared rules (ws, char, string, integer, number, boolean, null, value,
// object, array, member, fraction-nonzero, and the formats' date, time, date-time, uuid, ipv4, ipv6, hostname,
// hostname-label, email, uri, json-pointer, relative-json-pointer, regex, regex-atom) emitted once, after the
// schema's rules.
//
// The JSON texts the grammar produces:
//   - No whitespace before or after the top-level value: the text ends at its last byte (`}`, `]`, `"`, digit,
//     letter), so a decoder can stop there. Between tokens inside objects and arrays one optional separator,
//     `ws ::= | " " | "\n" [ \t]{0,20}`.
//   - Strings: `"` chars `"`, a char being a code point other than `"`, `\` and U+0000-U+001F, or an escape `\`
//     followed by one of `"\/bfnrt` or `u` and 4 hex digits (an escaped surrogate pair, backslash-u D800-DBFF then
//     backslash-u DC00-DFFF, is one char; a lone surrogate escape is not produced). minLength/maxLength count chars
//     (code points).
//   - Numbers: JSON syntax with bounded digit runs, so that an unconstrained model cannot emit an endless number:
//     an integer part of at most 16 digits (`0` or `[1-9][0-9]{0,15}`; no leading zeros), a fraction of at most 16
//     digits, an exponent of at most 3 digits; integers have neither fraction nor exponent. `-0` is never produced
//     for an integer or a bounded number. Bounded numbers (minimum/maximum/exclusive*) have no exponent.
//   - Objects: the properties in the order of `properties` (the order the JSON object holds: nlohmann::json sorts
//     keys, so pass nlohmann::ordered_json or the text to keep the schema's order), required ones present, optional
//     ones omissible. Without `additionalProperties` (or with false) no other keys; with true or a schema, further
//     `"key": value` pairs after the known ones, whose key is a string without escapes that is not a known
//     property name. An object schema without `properties` and without `additionalProperties` is any JSON object.
//     A required name missing from `properties` becomes a required key after the declared ones, its value the
//     additionalProperties schema (any value when absent or true; an error when false).
//   - Arrays: all `prefixItems` elements are required (JSON Schema also allows a shorter array; llama.cpp too
//     requires them) unless maxItems is smaller, then `items` elements; minItems/maxItems exact.
//   - enum/const: each value as compact JSON (nlohmann's dump()), so only that spelling of a value is produced.
//   - A schema with type-specific keywords but no `type` (`properties` without `"type": "object"`) produces only
//     the types those keywords constrain, as llama.cpp does.
//
// Supported keywords: type (a name or an array of names), enum, const, anyOf, oneOf (as anyOf: exclusivity is not
// enforced), allOf (one element), $ref (`#`, `#/$defs/NAME`, `#/definitions/NAME`, any local JSON pointer with
// ~0 ~1 and %XX escapes; recursion allowed), properties, required, additionalProperties, items, prefixItems,
// minItems, maxItems, uniqueItems (false only), minLength, maxLength, format (below), minimum, maximum,
// exclusiveMinimum, exclusiveMaximum (any bounds on integers, rounded inward; only integer-valued bounds on numbers).
//
// Formats: the ones below are enforced (every format Python's jsonschema 4.10 checks with rfc3987, idna and
// jsonpointer installed, and time, date-time, hostname), each as a subset of its strings that the strict readers
// also accept (Python's datetime.fromisoformat and ipaddress, IDNA 2008, RFC 3986); any other format value
// (duration, uri-template, int32, ...) is an annotation and ignored.
//   - date: YYYY-MM-DD, years 0001-9999, the exact days of each month, February 29 in leap years only.
//   - time: HH:MM:SS (00-23, 00-59, 00-59; no leap second), an optional fraction of 1-9 digits, then `Z` or
//     +HH:MM / -HH:MM (00-23, 00-59). date-time: date `T` time (uppercase T and Z only).
//   - uuid: 8-4-4-4-12 hex digits (either case).
//   - ipv4: four decimal octets 0-255 without leading zeros. ipv6: eight groups of 1-4 hex digits, or fewer with
//     one `::` standing for at least one zero group (no embedded IPv4, no zone).
//   - hostname, idn-hostname: ASCII labels of letters, digits and `-` (1-63 characters, not starting or ending
//     with `-`, not `--` as 3rd and 4th characters), dot-separated, no trailing dot: one to three labels, or four
//     to twelve labels of up to 20 characters (at most 251 characters).
//   - email, idn-email: a local part of RFC 5321 atext (letters, digits, !#$%&'*+-/=?^_`{|}~; one atom of up to
//     64 characters or 2-4 dot-separated atoms of up to 15), `@`, a hostname as above.
//   - uri, uri-reference, iri, iri-reference: scheme `://` hostname [`:` port of 1-5 digits] path-abempty
//     [`?` query] [`#` fragment] (RFC 3986), the path, query and fragment of pchar (unreserved, sub-delims, `:`,
//     `@`, %XX escapes), the query and fragment also `/` and `?`.
//   - json-pointer: `/`-prefixed tokens (RFC 6901; ~0 and ~1 escapes; no character JSON would escape).
//     relative-json-pointer: 0-99 then `#` or a json-pointer.
//   - regex: a small safe part of the syntax: literal letters, digits, space, `_`, `-`, `.`, classes of letters,
//     digits and `_` without ranges, \d \D \w \W \s \S, at most one of * + ? per atom, `|`, groups one level
//     deep, optional ^ and $ around the whole.
// With minLength/maxLength: a format whose strings all fit uses its shared rule; hostname, email and uri (and
// their idn/iri/reference variants) have shorter variants for a smaller maxLength (the parts given shares of it;
// the uri's path, query and fragment then without %XX escapes); otherwise a format with a length keyword that
// some of its strings break is refused (InvalidArgument naming format), as is one that no string can satisfy.
// Ignored annotations: title, description, $schema, $id, $comment, default, examples, deprecated, readOnly,
// writeOnly, discriminator (OpenAPI, emitted by pydantic), $defs and definitions (reached only through $ref), and
// any key starting with `x-`.
// Refused: not, if, then, else, patternProperties, dependentRequired, dependentSchemas, dependencies,
// propertyNames, unevaluatedProperties, unevaluatedItems, contains, minContains, maxContains, uniqueItems: true,
// multipleOf, minProperties, maxProperties, pattern, $anchor, $dynamicRef, $dynamicAnchor, remote $ref, allOf with
// several schemas, anyOf/oneOf/$ref/enum/const combined with other validation keywords (enum/const may be
// narrowed by `type`), and every unknown keyword. The schema `false` is refused (no instance exists).
//
// Errors are all InvalidArgument, the message naming the JSON pointer of the offending keyword or schema
// ("json schema #/properties/age/multipleOf: multipleOf is not supported"): unsupported or unknown keywords, malformed
// values, contradictions (minItems > maxItems, minimum > maximum, minLength > maxLength, a required property that
// cannot exist, an empty enum, bounds beyond the 16-digit limit), counts above 10,000 (minItems, maxItems, minLength,
// maxLength), schemas nested deeper than 100 levels, $ref cycles that consume no input (`{"$ref": "#"}`), schemas
// with no finite instance (a required property that recurses forever), and grammars above 1 MiB of text or
// 10,000 rules. Thread-safe (no shared state).
Result<std::string> JsonSchemaToGbnf(const nlohmann::json& schema);
Result<std::string> JsonSchemaToGbnf(const nlohmann::ordered_json& schema);
// Parses `schema_text` (keeping the order of `properties`) and compiles it; a JSON syntax error is InvalidArgument
// with its byte position. The std::string and const char* overloads exist so that a string argument is not
// ambiguous between the text and nlohmann::json.
Result<std::string> JsonSchemaToGbnf(std::string_view schema_text);
Result<std::string> JsonSchemaToGbnf(const std::string& schema_text);
Result<std::string> JsonSchemaToGbnf(const char* schema_text);

// Any JSON object (OpenAI response_format {"type": "json_object"}), and any JSON value, with the conventions above.
std::string JsonObjectGbnf();
std::string JsonValueGbnf();

}  // namespace herd::grammar
