#!/usr/bin/python3
"""Validates generated JSON texts against their JSON Schemas with an independent validator (Debian's
python3-jsonschema, draft 2020-12, formats checked: jsonschema's own checkers plus date-time and time through
Python's datetime). Reads JSON lines {"id": ..., "schema": <schema object or null>, "output": <text>} from the file
named by argv[1] (schema null: the output must be any JSON object), prints one JSON object:
{"checked": N, "invalid": [{"id": ..., "error": ...}, ...]}."""
import datetime
import json
import sys

import jsonschema

checker = jsonschema.Draft202012Validator.FORMAT_CHECKER


@checker.checks("date-time", raises=ValueError)
def _date_time(value):
    if not isinstance(value, str):
        return True
    if "T" not in value.upper():
        raise ValueError("no T")
    datetime.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


@checker.checks("time", raises=ValueError)
def _time(value):
    if not isinstance(value, str):
        return True
    datetime.time.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


def main():
    checked = 0
    invalid = []
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            rec = json.loads(line)
            checked += 1
            try:
                value = json.loads(rec["output"])
                if rec.get("schema") is None:
                    if not isinstance(value, dict):
                        raise ValueError("not a JSON object")
                else:
                    jsonschema.Draft202012Validator(rec["schema"], format_checker=checker).validate(value)
            except Exception as e:  # every failure is reported, whatever raised it
                invalid.append({"id": rec.get("id"), "error": str(e)[:500], "output": rec["output"][:300]})
    print(json.dumps({"checked": checked, "invalid": invalid}))


if __name__ == "__main__":
    main()
