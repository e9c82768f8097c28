"""The demo's runs are data: no import path outside ``invproto.`` in a run's config is ever imported, and a
malformed file of one run is that run's error while the other runs keep working.

Most runs here are written by hand (a config, ``results/scores.yaml``,
``metrics.csv``, a checkpoint file): reading them needs no training. The page
tests also use the tiny trained classifier of :mod:`test_demo`.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import yaml
from edflow_runner import REPO
from test_demo import assert_clean, first_stage_logs, labels, page, run_named  # noqa: F401 -- a session fixture

from invproto.demo.kinds import LoadError, check_imports, import_paths
from invproto.demo.loading import load_model, load_validation_dataset
from invproto.demo.runs import Run, find_runs, run_table

CONFIG = "configs/train_2000-01-01T00-00-00.yaml"
SCORES = "results/scores.yaml"
METRICS = "metrics.csv"
CHECKPOINT = "train/checkpoints/model-4.ckpt"
AE_PARAMS = {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 4, "z_dim": 8}
SPRITES = {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"}
CLASSIFIER = {"model": "invproto.models.classifier.Classifier", "model_params": {"n_classes": 5},
              "iterator": "invproto.iterators.classifier.ClassifierIterator", "datasets": SPRITES,
              "dataset_params": {"size": 32}}
# An IIN whose first stage is an IIN on an autoencoder: first stages nest.
FLOW = {"model": "invproto.models.iin.IIN",
        "model_params": {"n_flow": 2, "first_stage": {
            "model": "invproto.models.iin.IIN", "checkpoint": "iin.ckpt",
            "model_params": {"n_flow": 2, "first_stage": {"model": "invproto.models.autoencoder.Autoencoder",
                                                          "checkpoint": "ae.ckpt", "model_params": AE_PARAMS}}}},
        "iterator": "invproto.iterators.iin.IINIterator",
        "loss": {"target": "invproto.losses.iin.FactorLoss", "params": {}},
        "datasets": SPRITES, "dataset_params": {"size": 32}}
GOOD_SCORES = {"final": {"step": 4, "dataset": SPRITES["validation"], "accuracy": 0.5},
               "per_epoch": [{"step": 4, "accuracy": 0.5}], "evaluations": []}
GOOD_METRICS = "step,phase,accuracy\n0,train,0.25\n4,epoch_end,0.5\n"
UNREADABLE = object()  # in place of a file: a directory there, which cannot be read as a file (even by root)


def put(path: Path, content: object) -> None:
    """Write ``content`` to ``path``: text, bytes, :data:`UNREADABLE` (a directory), else as YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if content is UNREADABLE:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))


def make_run(logs: Path, name: str, config: object = CLASSIFIER, **files: object) -> Path:
    """A run ``logs/<name>`` with ``config``, :data:`GOOD_SCORES`, :data:`GOOD_METRICS` and a checkpoint file;
    ``files`` (``scores``, ``metrics``) replace the last two's contents."""
    run = logs / name
    contents = {CONFIG: config, SCORES: files.pop("scores", GOOD_SCORES), METRICS: files.pop("metrics", GOOD_METRICS),
                CHECKPOINT: b"not loaded"}
    assert not files, f"unknown files {files}"
    for file, content in contents.items():
        put(run / file, content)
    return run


def with_key(config: dict, where: str, value: object) -> dict:
    """A copy of ``config`` with ``value`` at the dotted key path ``where`` (mappings made where missing)."""
    copied = yaml.safe_load(yaml.safe_dump(config))
    *parents, last = where.split(".")
    node = copied
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return copied


@pytest.fixture
def payload(tmp_path, monkeypatch) -> tuple[str, Path]:
    """``(import path, marker)``: a class in a fresh module on ``sys.path`` whose import creates ``marker``. Its
    name starts with ``invproto`` but the module is not in the package."""
    module = f"invproto_payload_{uuid.uuid4().hex}"
    marker = tmp_path / "imported"
    put(tmp_path / "modules" / f"{module}.py",
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n\n\nclass Model:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    return f"{module}.Model", marker


# --- the guard -------------------------------------------------------------------------------------

def test_every_repository_config_names_invproto_code_only():
    """No false alarm: the configs of this repository pass, and the guard sees their top-level import paths."""
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config = yaml.safe_load(path.read_text())
        check_imports(config, path.name)
        found = dict(import_paths(config))
        assert all(found[key] == config[key] for key in ("model", "iterator") if key in config), path.name


def test_import_paths_are_found_at_any_depth():
    config = with_key(FLOW, "eval_pipeline.callbacks", {"fid": "invproto.callbacks.fid.fid_samples"})
    config = with_key(config, "eval_pipeline.callback_kwargs", {"fid": {"n_images": 4, "mode": "x.y"}})
    config = with_key(config, "model_params.backbones", [{"target": "invproto.modules.layers.ConvEncoder"}])
    assert dict(import_paths(config)) == {
        "model": "invproto.models.iin.IIN",
        "model_params.first_stage.model": "invproto.models.iin.IIN",
        "model_params.first_stage.model_params.first_stage.model": "invproto.models.autoencoder.Autoencoder",
        "model_params.backbones[0].target": "invproto.modules.layers.ConvEncoder",
        "iterator": "invproto.iterators.iin.IINIterator",
        "loss.target": "invproto.losses.iin.FactorLoss",
        "datasets.train": SPRITES["train"], "datasets.validation": SPRITES["validation"],
        "eval_pipeline.callbacks.fid": "invproto.callbacks.fid.fid_samples"}


FOREIGN_KEYS = ["model_params.first_stage.model", "model_params.first_stage.model_params.first_stage.model",
                "model_params.backbone.target", "loss.target", "datasets.validation", "iterator",
                "eval_pipeline.callbacks.fid"]


@pytest.mark.parametrize("where", FOREIGN_KEYS)
def test_a_foreign_import_path_is_refused_before_anything_is_imported(tmp_path, payload, where):
    """Every way the demo reads the run refuses it with one line naming the run, the key and the value; the
    module is never imported."""
    import_path, marker = payload
    run = Run(make_run(tmp_path / "logs", "2000-01-01T00-00-00_foreign", with_key(FLOW, where, import_path)))
    named = f"{run.name}: {CONFIG} names {where} = {import_path!r}, which is not an invproto import path"
    for read in (lambda: run.config, lambda: load_model(run, run.checkpoints[-1]),
                 lambda: load_validation_dataset(run)):
        with pytest.raises(LoadError) as error:
            read()
        assert str(error.value).startswith(named) and "\n" not in str(error.value)
    assert run_table([run]).loc[run.name, "error"].startswith(named)
    assert not marker.exists()


@pytest.mark.parametrize("import_path", ["os.system", "builtins.eval", "invproto.data;import os", "invproto"])
def test_only_dotted_paths_inside_the_package_pass(tmp_path, import_path):
    run = Run(make_run(tmp_path / "logs", "run", with_key(FLOW, "model_params.first_stage.model", import_path)))
    with pytest.raises(LoadError, match="model_params.first_stage.model = .* is not an invproto import path"):
        load_model(run, run.checkpoints[-1])


@pytest.mark.slow
def test_the_page_refuses_a_foreign_first_stage(tmp_path, monkeypatch, payload):
    import_path, marker = payload
    logs = tmp_path / "logs"
    make_run(logs, "run", with_key(FLOW, "model_params.first_stage.model", import_path))
    app = page(logs, monkeypatch, healthy=False)
    [error] = app.error
    assert f"model_params.first_stage.model = {import_path!r}" in error.value
    assert not marker.exists()


# --- one malformed run among good ones --------------------------------------------------------------

MALFORMED = {  # run name: (file, its content, what the run's error says)
    "config_not_a_mapping": (CONFIG, "- a list\n", f"{CONFIG} is not a mapping (a list)"),
    "config_not_yaml": (CONFIG, "model: [unclosed\n", f"{CONFIG} cannot be read (ParserError"),
    "config_unreadable": (CONFIG, UNREADABLE, f"{CONFIG} cannot be read (IsADirectoryError"),
    "datasets_not_a_mapping": (CONFIG, {**CLASSIFIER, "datasets": SPRITES["train"]},
                               f"{CONFIG} has datasets that are not a mapping (a str)"),
    "foreign_first_stage": (CONFIG, with_key(CLASSIFIER, "model_params.first_stage.model", "os.system"),
                            f"{CONFIG} names model_params.first_stage.model = 'os.system'"),
    "scores_not_a_mapping": (SCORES, "just text\n", f"{SCORES} is not a mapping (a str)"),
    "scores_not_utf8": (SCORES, b"final: \xff\xfe\n", f"{SCORES} cannot be read (UnicodeDecodeError"),
    "scores_unreadable": (SCORES, UNREADABLE, f"{SCORES} cannot be read (IsADirectoryError"),
    "final_not_a_mapping": (SCORES, {"final": [0.5]}, f"{SCORES} has a final that is not a mapping (a list)"),
    "metric_not_a_number": (SCORES, {"final": {"accuracy": "high"}},
                            f"{SCORES} has final.accuracy = 'high', which is not a number"),
    "per_epoch_not_a_list": (SCORES, {"final": None, "per_epoch": {"accuracy": 0.5}},
                             f"{SCORES} has a per_epoch that is not a list of mappings"),
}


def malformed_logs(logs: Path) -> Path:
    """``logs`` with a good classifier run ``good`` and one run per entry of :data:`MALFORMED`."""
    make_run(logs, "good")
    for name, (file, content, _) in MALFORMED.items():
        make_run(logs, name, **{"config" if file == CONFIG else "scores": content})
    return logs


def test_the_run_table_flags_malformed_runs_and_lists_the_good_one(tmp_path):
    table = run_table(find_runs(malformed_logs(tmp_path / "logs")))
    good = table.loc["good"]
    assert (good["model"], good["kind"], good["dataset"], good["step"], good["accuracy"]) == \
        ("Classifier", "classifier", "SpritesTrain", 4, 0.5)
    assert good.isna()["error"]
    for name, (file, _, expected) in MALFORMED.items():
        row = table.loc[name]
        assert row["error"].startswith(f"{name}: {expected}"), row["error"]
        if file == CONFIG:  # the scores still show
            assert row["accuracy"] == 0.5 and row.isna()["kind"]
        else:  # the config still shows
            assert row["kind"] == "classifier" and row.isna()["accuracy"]


MALFORMED_METRICS = {  # metrics.csv: (content, what the run's error says)
    "no_phase": ("step,accuracy\n0,0.5\n", "has no phase column"),
    "no_step_no_phase": ("accuracy\n0.5\n", "has no step and no phase column"),
    "step_not_a_number": ("step,phase\nlast,train\n", "has a step that is not a number"),
    "not_csv": ("step,phase\n0,train\n1,train,3,4\n", "cannot be read (ParserError"),
    "not_utf8": (b"step,phase\n\xff\xfe,train\n", "cannot be read (UnicodeDecodeError"),
    "unreadable": (UNREADABLE, "cannot be read (IsADirectoryError"),
}


@pytest.mark.parametrize("damage", MALFORMED_METRICS)
def test_a_malformed_metrics_csv_is_an_error_naming_it(tmp_path, damage):
    content, expected = MALFORMED_METRICS[damage]
    run = Run(make_run(tmp_path / "logs", damage, metrics=content))
    with pytest.raises(LoadError) as error:
        run.metrics()
    assert str(error.value).startswith(f"{damage}: {METRICS} {expected}") and "\n" not in str(error.value)


def test_a_missing_or_empty_metrics_csv_is_no_metrics_yet(tmp_path):
    run = Run(make_run(tmp_path / "logs", "fresh", metrics=""))
    assert run.metrics().empty
    (run.path / METRICS).unlink()
    assert run.metrics().empty


# --- the page: the malformed run shows its error, the good one works ---------------------------------

def datasets_not_a_mapping(run: Path) -> str:
    """Make the run's config's ``datasets`` a string; what the run's error then says."""
    config = Run(run).config_file
    put(run / config, {**yaml.safe_load((run / config).read_text()), "datasets": SPRITES["train"]})
    return f"{config} has datasets that are not a mapping"


def final_not_a_mapping(run: Path) -> str:
    put(run / SCORES, {"final": [0.5]})
    return f"{SCORES} has a final that is not a mapping"


def metrics_without_phase(run: Path) -> str:
    put(run / METRICS, "step,accuracy\n0,0.5\n")
    return f"{METRICS} has no phase column"


@pytest.mark.slow
@pytest.mark.parametrize("damage", [datasets_not_a_mapping, final_not_a_mapping, metrics_without_phase])
def test_the_page_shows_a_malformed_run_s_error_and_the_good_run(
        first_stage_logs, tmp_path, monkeypatch, damage):  # noqa: F811 -- the imported fixture
    logs = tmp_path / "logs"
    trained = first_stage_logs / run_named(first_stage_logs, "clf")
    good, bad = (shutil.copytree(trained, logs / f"2000-01-01T00-00-0{i}_{name}")
                 for i, name in enumerate(["good", "bad"]))
    expected = damage(bad)

    app = page(logs, monkeypatch, bad.name, healthy=False)
    [error] = app.error
    assert error.value.startswith(f"invproto: {bad.name}: {expected}"), error.value
    table = app.table[0].value
    assert sorted(table.index) == sorted([good.name, bad.name]) and table.loc[good.name, "kind"] == "classifier"
    assert labels(app.tabs)[-1] == "Metrics"

    app.sidebar.selectbox(key="run").set_value(good.name).run()
    assert_clean(app)
    assert labels(app.tabs) == ["Explain an image", "Metrics"]


def test_the_check_command_names_every_malformed_run_and_passes_a_clean_folder(tmp_path, capsys):
    from invproto.demo import check

    logs = malformed_logs(tmp_path / "logs")
    assert check.main([str(logs)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == len(MALFORMED) and all(line.startswith("invproto: ") for line in lines)
    for name, (_, _, expected) in MALFORMED.items():
        assert any(line.startswith(f"invproto: {name}: {expected}") for line in lines), name
    clean = make_run(tmp_path / "clean", "good").parent
    assert check.main([str(clean)]) == 0
    assert capsys.readouterr().out.strip() == "1 run read cleanly"
    assert check.main([str(tmp_path / "nothing")]) == 1
