"""Prompt sources, dedup, contamination, split, the prompts stage, and the prompt styles of `prompting`."""
import base64
import gzip
import json
import pickle
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from megatron_ssd.config import SSDConfig
from megatron_ssd.config.validate import collect_errors
from megatron_ssd.errors import DataError
from megatron_ssd.problems import Problem
from megatron_ssd.prompting import chat_messages
from megatron_ssd.prompts.contamination import find_contamination
from megatron_ssd.prompts.dedup import dedup, normalize_text
from megatron_ssd.prompts.sources import decode_private_tests, load_humaneval, load_source
from megatron_ssd.prompts.split import split_heldout
from megatron_ssd.rundir import RunDir
from megatron_ssd.stages import StageContext
from megatron_ssd.stages import prompts as prompts_stage

LONG = ("Write a function that returns the sum of all even numbers in a list of integers, ignoring negative values and "
        "returning zero for an empty list of numbers given as input")


def p(pid, text, starter=""):
    return Problem(problem_id=pid, source="jsonl", question=text, starter_code=starter)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ------------------------------------------------------------------------------------------ sources
def test_humaneval_loads_all_164():
    problems = load_humaneval()
    assert len(problems) == 164
    first = problems[0]
    assert first.problem_id == "HumanEval/0" and first.style == "humaneval"
    assert "def check(candidate)" in first.test_code and first.entry_point == "has_close_elements"


def test_generic_jsonl_styles(tmp_path):
    f = write_jsonl(tmp_path / "x.jsonl", [
        {"task_id": "a", "prompt": "def f():\n", "entry_point": "f", "test": "def check(c): assert c() is None"},
        {"task_id": 7, "text": "Add two numbers.", "test_list": ["assert add(1, 2) == 3"]},
        {"id": "c", "question": "Print hello."},
    ])
    a, b, c = load_source("jsonl", str(f))
    assert (a.style, b.style, c.style) == ("humaneval", "assert", "none")
    assert b.problem_id == "7" and "assert add(1, 2) == 3" in b.test_code


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"id": "a", "question": "ok"}\n{"id": "b", "question": \n')
    with pytest.raises(DataError, match=r"bad.jsonl:2: malformed JSON"):
        load_source("jsonl", str(f))


def test_non_utf8_line_is_named(tmp_path):
    f = tmp_path / "latin.jsonl"
    f.write_bytes(b'{"id": "a", "question": "ok"}\n{"id": "b", "question": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"latin.jsonl:2: line is not valid UTF-8"):
        load_source("jsonl", str(f))


def test_missing_field_and_empty_prompt(tmp_path):
    with pytest.raises(DataError, match="needs an id"):
        load_source("jsonl", str(write_jsonl(tmp_path / "a.jsonl", [{"question": "x"}])))
    with pytest.raises(DataError, match="is empty"):
        load_source("jsonl", str(write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "question": "   "}])))


def test_duplicate_ids_refused(tmp_path):
    f = write_jsonl(tmp_path / "d.jsonl", [{"id": "1", "question": "a"}, {"id": "1", "question": "b"}])
    with pytest.raises(DataError, match="appears twice"):
        load_source("jsonl", str(f))


def test_missing_path_is_clear(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_source("jsonl", str(tmp_path / "nope.jsonl"))


def _lcb_private(tests):
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


def lcb_row(qid, date, tests, private=(), func=None, starter=""):
    return {"question_id": qid, "question_title": qid, "question_content": f"Solve {qid} carefully.",
            "platform": "leetcode", "contest_id": "c1", "contest_date": date, "starter_code": starter,
            "difficulty": "easy", "public_test_cases": json.dumps(tests),
            "private_test_cases": _lcb_private(list(private)),
            "metadata": json.dumps({"func_name": func} if func else {})}


def test_livecodebench_parquet_window_styles_and_private_tests(tmp_path):
    stdin = [{"input": "1 2\n", "output": "3\n", "testtype": "stdin"}]
    functional = [{"input": "[1, 2]", "output": "3", "testtype": "functional"}]
    rows = [
        lcb_row("q1", "2025-01-15T00:00:00", stdin),
        lcb_row("q2", "2025-03-01T00:00:00", stdin, private=[{"input": "2 2\n", "output": "4\n", "testtype": "stdin"}]),
        lcb_row("q3", "2025-04-01T00:00:00", functional, func="add", starter="class Solution:\n    def add(self, a, b):"),
    ]
    f = tmp_path / "lcb.parquet"
    pq.write_table(pa.Table.from_pylist(rows), f)
    problems = load_source("livecodebench", str(f), date_start="2025-02-01", date_end="2025-05-31")
    assert [x.problem_id for x in problems] == ["q2", "q3"]
    q2, q3 = problems
    assert q2.style == "stdin" and len(q2.test_cases) == 2 and q2.test_cases[1].output == "4\n"
    assert q3.style == "functional" and q3.entry_point == "add" and q3.difficulty == "easy"
    assert q2.contest_date == "2025-03-01"


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_private_tests_never_unpickle_objects():
    blob = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(DataError, match="could not be decoded safely"):
        decode_private_tests(blob, "row 3")


def test_rstarcoder_saved_dataset_folder(tmp_path):
    table = pa.Table.from_pylist([
        {"question_id": "r1", "question": "Read n and print n squared.", "starter_code": "", "is_passed": True},
        {"question_id": "r2", "question": "Implement f.", "starter_code": "def f(x):", "is_passed": False},
    ])
    folder = tmp_path / "seed_sft"
    folder.mkdir()
    with pa.OSFile(str(folder / "data-00000-of-00001.arrow"), "wb") as sink:
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    r1, r2 = load_source("rstarcoder", str(folder))
    assert r1.metadata["prompt_style"] == "stdin" and r2.metadata["prompt_style"] == "function"


def test_gzipped_jsonl(tmp_path):
    f = tmp_path / "x.jsonl.gz"
    with gzip.open(f, "wt") as g:
        g.write(json.dumps({"id": "z", "question": "zip"}) + "\n")
    assert load_source("jsonl", str(f))[0].problem_id == "z"


# -------------------------------------------------------------------------------- dedup, contamination
def test_exact_dedup_normalises_case_and_whitespace():
    result = dedup([p("a", "Sum  the LIST"), p("b", "sum the list"), p("c", "something else entirely")])
    assert [x.problem_id for x in result.kept] == ["a", "c"] and result.exact_duplicates == {"b": "a"}
    assert normalize_text("  A\tB \n") == "a b"


def test_near_duplicates_found_and_distinct_kept():
    near = LONG.replace("returning zero", "return zero")
    distinct = "Parse a CSV file of sales records and report the month with the highest revenue per region overall"
    result = dedup([p("a", LONG), p("b", near), p("c", distinct)], threshold=0.6)
    assert result.near_duplicates == {"b": "a"} and [x.problem_id for x in result.kept] == ["a", "c"]


def test_contamination_by_13_gram():
    train = [p("t1", "Preamble words here. " + LONG), p("t2", "A totally different task about graphs and paths only")]
    eval_set = [p("e1", LONG)]
    result = find_contamination(train, eval_set, n=13)
    assert result.contaminated == {"t1": "e1"}


def test_split_is_deterministic_disjoint_and_sized():
    problems = [p(f"id{i}", f"problem {i}") for i in range(101)]
    train, held = split_heldout(problems, 0.5, seed=0)
    assert len(held) == 50 and len(train) == 51
    assert not {x.problem_id for x in train} & {x.problem_id for x in held}
    train2, held2 = split_heldout(list(reversed(problems)), 0.5, seed=0)
    assert {x.problem_id for x in held2} == {x.problem_id for x in held}
    _, held3 = split_heldout(problems, 0.5, seed=1)
    assert {x.problem_id for x in held3} != {x.problem_id for x in held}


# ------------------------------------------------------------------------------------------- stage
def test_prompts_stage_embedded_default_halves(tmp_path):
    cfg = SSDConfig(run_dir=str(tmp_path / "run"))
    run = RunDir.open(cfg)
    summary = prompts_stage.run(cfg, StageContext(run=run))
    train = prompts_stage.load_prompts(run.path, "train")
    evals = prompts_stage.load_prompts(run.path, "eval")
    assert len(evals) == 82 and summary["eval"] == 82
    assert not {x.problem_id for x in train} & {x.problem_id for x in evals}
    assert len(train) == summary["train"] == 164 - 82 - summary["near_duplicates"] - summary["exact_duplicates"] \
        - summary["contaminated"]
    assert run.read_manifest()["data"]["prompts"]["contaminated"] == summary["contaminated"]
    assert evals[0].test_code  # round-trips through parquet with its tests


def test_prompts_stage_separate_eval_source_and_caps(tmp_path):
    f = write_jsonl(tmp_path / "train.jsonl", [{"id": f"t{i}", "question": f"Task number {i}: {'x ' * i}"} for i in range(30)])
    cfg = SSDConfig(run_dir=str(tmp_path / "run"))
    cfg.data.source, cfg.data.path, cfg.data.max_train_prompts, cfg.data.max_eval_problems = "jsonl", str(f), 10, 20
    run = RunDir.open(cfg)
    summary = prompts_stage.run(cfg, StageContext(run=run))
    assert summary["train"] == 10 and summary["eval"] == 20 and summary["split"] == "separate eval source"
    assert "train_source" in run.read_manifest()["inputs"]


# ------------------------------------------------------------------------- prompt styles (megatron_ssd.prompting)
# The expected texts are written out from lcb_runner/prompts/code_generation.py (:14, :22-24, :35-51, :129-139,
# :252-276, :323-326) so that a change of wording on our side fails here.

LCB_SYSTEM = ("You are an expert Python programmer. You will be given a question (problem specification) and will "
              "generate a correct Python program that matches the specification and passes all tests.")
STDIN_FORMAT = ("Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on "
                "the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python "
                "program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.")
STARTER_FORMAT = ("You will use the following starter code to write the solution to the problem and enclose your code "
                  "within delimiters.")
STARTER = "class Solution:\n    def add(self, a: int, b: int) -> int:\n        "


def lcb_eval_problem(starter=""):
    return Problem(problem_id="q", source="livecodebench", question="Add two numbers.\n", style="stdin",
                   starter_code=starter)


def test_lcb_generic_is_livecodebenchs_system_and_question_template():
    stdin = chat_messages(lcb_eval_problem(), "lcb_generic")
    assert stdin == [{"role": "system", "content": LCB_SYSTEM}, {"role": "user", "content": (
        "### Question:\nAdd two numbers.\n\n\n" f"### Format: {STDIN_FORMAT}\n" "```python\n# YOUR CODE HERE\n```\n\n"
        "### Answer: (use the provided format with backticks)\n\n")}]
    functional = chat_messages(lcb_eval_problem(STARTER), "lcb_generic")[1]["content"]
    assert functional == ("### Question:\nAdd two numbers.\n\n\n" f"### Format: {STARTER_FORMAT}\n"
                          f"```python\n{STARTER}\n```\n\n" "### Answer: (use the provided format with backticks)\n\n")


def chatml(messages, add_generation_prompt=True, think=False):
    """A Qwen-style ChatML rendering (system/user turns verbatim), as the model's chat template does."""
    out = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return out + ("<|im_start|>assistant\n" + ("<think>\n" if think else "") if add_generation_prompt else "")


def test_lcb_codeqwen_renders_to_lcb_runners_raw_string():
    for starter, tail in (("", f"{STDIN_FORMAT}\n```python\n# YOUR CODE HERE\n```\n\n<|im_end|>\n"),
                          (STARTER, f"{STARTER_FORMAT}\n```python\n{STARTER}\n```\n\n<|im_end|>\n")):
        raw = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user" + "\n\n"
               "You will be given a question (problem specification) and will generate a correct Python program "
               "that matches the specification and passes all tests. You will NOT return anything except for the "
               "program.\n\n" "Question: Add two numbers.\n\n\n" + tail + "<|im_start|>assistant\n")
        assert chatml(chat_messages(lcb_eval_problem(starter), "lcb_codeqwen")) == raw


def test_training_and_eval_prompts_come_from_one_builder():
    seed = Problem(problem_id="r", source="rstarcoder", question="Add two numbers.\n", starter_code=STARTER)
    for style in ("default", "lcb_generic", "lcb_codeqwen"):
        assert chat_messages(seed, style) == chat_messages(lcb_eval_problem(STARTER), style)


def test_humaneval_prompt_is_the_same_under_every_style():
    he = load_humaneval()[0]
    default = chat_messages(he)
    assert default[0]["content"].startswith("Complete the following Python function.")
    assert all(chat_messages(he, s) == default for s in ("lcb_generic", "lcb_codeqwen"))


def test_unknown_prompt_style_is_refused_in_config_and_builder():
    cfg = SSDConfig()
    cfg.model.prompt_style = "lcb"
    assert any("model.prompt_style='lcb'" in e for e in collect_errors(cfg))
    with pytest.raises(ValueError, match="model.prompt_style"):
        chat_messages(lcb_eval_problem(), "lcb")
