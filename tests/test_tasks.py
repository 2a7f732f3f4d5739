"""The task table data/tasks.yaml: read once, validated, and the one source of task facts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kdanalysis.errors import ConfigError
from kdanalysis.tasks import STUDY_TAG, TOY_TAG, read_task_table, task_table

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "data" / "tasks.yaml"


def _table_with(tmp_path: Path, change: dict) -> Path:
    """A copy of the bundled table with ``change`` merged into its first task."""
    data = yaml.safe_load(TABLE.read_text(encoding="utf-8"))
    data["tasks"][0].update(change)
    path = tmp_path / "tasks.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_the_bundled_table_is_read_once_and_is_the_repository_file() -> None:
    assert task_table() is task_table()
    assert read_task_table(TABLE) == task_table()


def test_the_study_has_fourteen_tasks_in_two_domains_and_the_toy_task_is_apart() -> None:
    table = task_table()
    study = table.tasks.ids(tag=STUDY_TAG)
    assert len(study) == 14 and table.tasks.domains(tag=STUDY_TAG) == ("math", "commonsense")
    assert len(table.tasks.ids(domain="math", tag=STUDY_TAG)) == 6
    assert table.tasks.ids(tag=TOY_TAG) == ["arithmetic"]
    assert table.order(tag=STUDY_TAG) == (*study, "average")
    assert all(table.tasks[t].test_size and table.tasks[t].paper_column for t in study)
    assert table.tasks["arithmetic"].file_name is None and "toy:arithmetic" in table.tasks["arithmetic"].note
    # a task without a note of its own says where the released repository has it
    assert table.tasks["gsm8k"].note == (
        "It is generative/dataset/gsm8k/test.json of the LCS2-IIITD/KD_generalization repository; "
        "save it as gsm8k.json in the data directory."
    )
    labels, columns = table.labels(), table.paper_columns()
    assert (labels["arc_e"], labels["average"], columns["social_i_qa"], columns["Average"]) == (
        "ARC-e",
        "Average",
        "siqa",
        "average",
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"answer_type": "numbr"}, r"tasks\.0\.answer_type: Input should be 'number'.*\(got 'numbr'\)"),
        ({"test_sise": 3}, r"tasks\.0\.test_sise: unknown key"),
        ({"test_size": "many"}, r"tasks\.0\.test_size: .*\(got 'many'\)"),
        ({"labels": ["x"]}, r"tasks\.0: task 'gsm8k': answer_type 'number' takes no labels"),
        ({"task": "GSM-8K"}, r"tasks\.0: task id 'GSM-8K' must be lower-case"),
        ({"task": "svamp"}, r"task 'svamp' is defined twice"),
        ({"paper_column": "SVAMP"}, r"paper_column 'SVAMP' is used twice"),
        (
            {"hub": {"dataset_path": "x/y", "test_split": "test", "converter": "c"}},
            r"tasks\.0\.hub\.dataset_name",
        ),
    ],
)
def test_a_bad_table_gives_one_error_naming_file_field_and_value(
    tmp_path: Path, change: dict, message: str
) -> None:
    path = _table_with(tmp_path, change)
    with pytest.raises(ConfigError, match=message) as info:
        read_task_table(path)
    assert str(info.value).startswith(str(path)) and len(str(info.value).splitlines()) == 1


def test_unreadable_tables_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read task table .*missing\.yaml: file not found"):
        read_task_table(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tasks: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+:\d+: not valid YAML"):
        read_task_table(broken)
