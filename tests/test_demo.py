"""The Streamlit demo (invproto/demo) on tiny runs of every kind, trained through the real edflow CLI.

The runs (autoencoder, classifier, IIN and dIIN on that autoencoder, prototype
flow) are trained once per session, a few steps each, in a scratch directory
(:func:`demo_runs`); the page is driven with Streamlit's ``AppTest``. The
autoencoder and the IIN train with their iterators minus the FID callbacks
(Inception costs minutes on a CPU; FID has its own tests), everything else as
configured.
"""

from __future__ import annotations

import functools
import io
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import streamlit as st
import torch
import yaml
from edflow_runner import REPO, EdflowRunner
from PIL import Image
from streamlit.testing.v1 import AppTest

from invproto.data.synthetic import SHAPES
from invproto.demo.kinds import LoadError
from invproto.demo.loading import load_model, load_validation_dataset
from invproto.demo.runs import Run, find_runs, metric_curves, run_table

pytestmark = pytest.mark.slow

APP = str(REPO / "invproto" / "demo" / "app.py")
STEPS = 4
TINY = ["--dataset_params/n_train", "64", "--dataset_params/n_validation", "16", "--batch_size", "16",
        "--num_steps", str(STEPS), "--log_freq", "2", "--n_data_processes", "1", "--optimizer/warmup_steps", "0"]
AE_PARAMS = {"in_channels": 3, "in_size": 32, "n_down": 4, "base_channels": 4, "z_dim": 8}
ITERATORS_WITHOUT_FID = '''"""invproto iterators without their FID callbacks, for the demo's tiny test runs."""
from invproto.iterators import autoencoder, cinn, iin


def without_fid(callbacks: dict) -> dict:
    return {"eval_op": {name: f for name, f in callbacks["eval_op"].items() if not name.startswith("fid")}}


class AutoencoderIterator(autoencoder.AutoencoderIterator):
    callbacks = without_fid(autoencoder.AutoencoderIterator.callbacks)


class IINIterator(iin.IINIterator):
    callbacks = without_fid(iin.IINIterator.callbacks)


class ConditionalIINIterator(cinn.ConditionalIINIterator):
    callbacks = without_fid(cinn.ConditionalIINIterator.callbacks)
'''
# The invproto iterator each of those derives from: what a run's saved config names for the demo, which refuses
# a run naming code outside invproto.
INVPROTO_ITERATORS = {"demo_fixture.AutoencoderIterator": "invproto.iterators.autoencoder.AutoencoderIterator",
                      "demo_fixture.IINIterator": "invproto.iterators.iin.IINIterator",
                      "demo_fixture.ConditionalIINIterator": "invproto.iterators.cinn.ConditionalIINIterator"}


def option_pairs(prefix: str, values: dict) -> list[str]:
    """edflow command-line overrides ``--<prefix>/<key> <value>`` for every item of ``values``."""
    return [item for key, value in values.items() for item in (f"--{prefix}/{key}", str(value))]


def train(runner: EdflowRunner, name: str, *args: str) -> Path:
    result = runner(*args, "-t", *TINY, "-n", name)
    assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    run = runner.run_dir(name)
    name_invproto_iterator(run)
    return run


def name_invproto_iterator(run: Path) -> None:
    """Make the run's saved configs name the invproto iterator in place of a FID-less fixture one."""
    for path in (run / "configs").glob("train_*.yaml"):
        config = yaml.safe_load(path.read_text())
        config["iterator"] = INVPROTO_ITERATORS.get(config["iterator"], config["iterator"])
        path.write_text(yaml.safe_dump(config))


def train_in_parallel(runner: EdflowRunner, jobs: dict[str, list[str]]) -> None:
    """``edflow <args> -t <TINY>`` for every ``name: args`` of ``jobs`` at once (the CPU waits less on imports)."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(lambda name: train(runner, name, *jobs[name]), jobs))


def checkpoint(run: Path) -> Path:
    return run / "train" / "checkpoints" / f"model-{STEPS}.ckpt"


def scratch_config(runner: EdflowRunner, name: str, base: str, drop: tuple[str, ...] = (), **sections) -> str:
    """``configs/<base>.yaml`` less the sections ``drop``, with ``sections`` replaced, in the scratch dir."""
    config = yaml.safe_load((REPO / "configs" / f"{base}.yaml").read_text())
    config = {key: value for key, value in config.items() if key not in drop}
    config.update(sections)
    (runner.workdir / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return f"{name}.yaml"


def tiny_flow_params(first_stage_checkpoint: Path, **extra) -> dict:
    """``model_params`` of a tiny IIN-like flow on the tiny autoencoder."""
    first_stage = {"model": "invproto.models.autoencoder.Autoencoder", "model_params": AE_PARAMS,
                   "checkpoint": str(first_stage_checkpoint)}
    return {"first_stage": first_stage, "n_flow": 2, "hidden_depth": 1, "hidden_dim": 16, **extra}


@functools.cache
def first_stages(workdir: Path) -> EdflowRunner:
    """A scratch dir with a tiny autoencoder run (``ae``) and classifier run (``clf``), trained in parallel."""
    runner = EdflowRunner(workdir)
    package = runner.workdir / "demo_fixture"  # a package: edflow copies the iterator's top-level package into the run
    package.mkdir(exist_ok=True)
    (package / "__init__.py").write_text(ITERATORS_WITHOUT_FID)
    ae = scratch_config(runner, "ae", "sprites_ae_cpu", drop=("eval_pipeline",), model_params=AE_PARAMS,
                        iterator="demo_fixture.AutoencoderIterator")
    train_in_parallel(runner, {"ae": ["-b", ae, "--loss/params/disc_channels", "4"],
                               "clf": ["-b", "configs/sprites_clf.yaml", "--model_params/base_channels", "4"]})
    return runner


@functools.cache
def demo_runs(workdir: Path) -> EdflowRunner:
    """:func:`first_stages` plus an IIN, a dIIN and a prototype flow on the autoencoder and a conditional INN
    of the classifier, trained in parallel."""
    runner = first_stages(workdir)
    ae_checkpoint = checkpoint(runner.run_dir("ae"))
    sprites = {"datasets": {"train": "invproto.data.SpritesTrain", "validation": "invproto.data.SpritesValidation"},
               "dataset_params": {"size": 32}}
    iin = scratch_config(runner, "iin", "mnist_iin", drop=("data", "eval_pipeline"),
                         iterator="demo_fixture.IINIterator", model_params=tiny_flow_params(ae_checkpoint), **sprites)
    chained = {"checkpoint": str(runner.run_dir("ae"))}  # by run directory: model and model_params from its config
    diin = scratch_config(runner, "diin", "sprites_diin",
                          model_params={**tiny_flow_params(ae_checkpoint, factor_config=[3, 2, 3]),
                                        "first_stage": chained})
    protoflow = ["-b", "configs/sprites_protoflow.yaml", "--model_params/first_stage/checkpoint", str(ae_checkpoint),
                 *option_pairs("model_params/first_stage/model_params", AE_PARAMS),
                 *option_pairs("model_params", {"n_flow": 2, "hidden_dim": 16, "protos_per_class": 2}),
                 *option_pairs("iterator_params", {"kmeans_init": "false", "nearest_pool": 16,
                                                   "n_prototype_samples": 2, "n_nearest": 2})]
    clf = {"model": "invproto.models.classifier.Classifier", "layer": "head",
           "model_params": {"in_channels": 3, "in_size": 32, "n_classes": 5, "n_down": 4, "base_channels": 4,
                            "code_dim": 64}, "checkpoint": str(checkpoint(runner.run_dir("clf")))}
    cinn = scratch_config(runner, "cinn", "sprites_cinn", drop=("eval_pipeline",),
                          iterator="demo_fixture.ConditionalIINIterator",
                          model_params={"network": clf, "autoencoder": tiny_flow_params(ae_checkpoint)["first_stage"],
                                        "embedder": {"embedding_dim": 8, "depth": 2}, "n_flow": 2,
                                        "hidden_depth": 1, "hidden_dim": 16})
    train_in_parallel(runner, {"iin": ["-b", iin], "diin": ["-b", diin], "protoflow": protoflow,
                               "cinn": ["-b", cinn, "--iterator_params/attack_epsilon", "0.1"]})
    return runner


@pytest.fixture(scope="session")
def demo_logs(tmp_path_factory) -> Path:
    """``logs/`` with one tiny run of each kind: ``ae``, ``clf``, ``iin``, ``diin``, ``protoflow``."""
    return demo_runs(tmp_path_factory.getbasetemp() / "demo_runs").workdir / "logs"


@pytest.fixture(scope="session")
def first_stage_logs(tmp_path_factory) -> Path:
    """``logs/`` with at least the tiny ``ae`` and ``clf`` runs."""
    return first_stages(tmp_path_factory.getbasetemp() / "demo_runs").workdir / "logs"


def run_named(logs: Path, name: str) -> str:
    [run] = [r.name for r in find_runs(logs) if r.name.endswith(f"_{name}")]
    return run


def page(logs: Path, monkeypatch, run: str | None = None, healthy: bool = True) -> AppTest:
    """The demo page on ``logs`` with ``run`` chosen in the sidebar, after its first script run
    (without exceptions and, when ``healthy``, without error boxes)."""
    monkeypatch.setenv("INVPROTO_DEMO_LOGS", str(logs))
    app = AppTest.from_file(APP, default_timeout=60)
    if run is not None:
        app.session_state["run"] = run
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    if healthy:
        assert_clean(app)
    return app


def assert_clean(app: AppTest) -> None:
    """No exception and no error box on the page (views report their failures in error boxes)."""
    assert not app.exception and not app.error, [e.value for e in [*app.exception, *app.error]]


def labels(elements) -> list[str]:
    return [element.label for element in elements]


def images_after_tab(app: AppTest, title: str) -> int:
    """The number of image rows (``st.image`` calls) drawn in the tab ``title``."""
    [tab] = [tab for tab in app.tabs if tab.label == title]
    return len(tab.image)


# --- run discovery and loading ---------------------------------------------------------------

def test_run_table_lists_every_run_with_kind_dataset_step_and_key_metrics(demo_logs):
    runs = find_runs(demo_logs)
    table = run_table(runs)
    kinds = {name.rsplit("_", 1)[-1]: kind for name, kind in table["kind"].items()}
    assert kinds == {"ae": "autoencoder", "clf": "classifier", "iin": "IIN", "diin": "dIIN", "protoflow": "prototype",
                     "cinn": "invariances"}
    assert set(table["step"]) == {STEPS}
    assert set(table["dataset"]) == {"SpritesTrain", "SpritesPairsTrain"}
    by_name = {name.rsplit("_", 1)[-1]: row for name, row in table.iterrows()}
    scores = yaml.safe_load((demo_logs / run_named(demo_logs, "clf") / "results" / "scores.yaml").read_text())
    assert by_name["clf"]["accuracy"] == scores["final"]["accuracy"]
    assert by_name["iin"]["bits_per_dim"] > 0 and by_name["ae"]["l1"] > 0
    assert 0 <= by_name["protoflow"]["accuracy"] <= 1


def test_metric_curves_have_one_column_per_phase(demo_logs):
    run = Run(demo_logs / run_named(demo_logs, "clf"))
    curves = metric_curves(run.metrics(), "accuracy")
    assert set(curves["phase"]) == {"train", "validation", "epoch_end"}
    assert curves["step"].is_monotonic_increasing and not curves.duplicated(["step", "phase"]).any()
    [after_epoch] = curves[curves["phase"] == "epoch_end"].itertuples()
    assert after_epoch.step == STEPS and after_epoch.accuracy == pytest.approx(run.scores["final"]["accuracy"])


def test_models_load_on_the_cpu_with_the_checkpoint_weights(demo_logs):
    run = Run(demo_logs / run_named(demo_logs, "diin"))
    model = load_model(run, run.checkpoints[-1])
    state = torch.load(run.checkpoints[-1], weights_only=True)["model"]
    assert not model.training and all(p.device.type == "cpu" for p in model.parameters())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, state[name])


def test_a_checkpoint_is_never_unpickled_beyond_weights(demo_logs, tmp_path):
    """A checkpoint that would run code when unpickled (here: create a file) is refused, and nothing runs."""
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return open, (str(marker), "w")

    run_dir = tmp_path / "logs" / "evil_run"
    shutil.copytree(demo_logs / run_named(demo_logs, "ae"), run_dir)
    torch.save({"model": Payload(), "describe": None}, checkpoint(run_dir))
    with pytest.raises(LoadError, match="cannot load checkpoint") as error:
        load_model(Run(run_dir), checkpoint(run_dir))
    assert "\n" not in str(error.value) and not marker.exists()


def test_only_invproto_model_classes_are_built(demo_logs, tmp_path):
    run_dir = tmp_path / "logs" / "foreign_model"
    shutil.copytree(demo_logs / run_named(demo_logs, "clf"), run_dir)
    config_path = next((run_dir / "configs").glob("train_*.yaml"))
    config = yaml.safe_load(config_path.read_text())
    config_path.write_text(yaml.safe_dump({**config, "model": "subprocess.Popen"}))
    with pytest.raises(LoadError, match="not an invproto import path"):
        load_model(Run(run_dir), checkpoint(run_dir))


# --- the page, per kind -----------------------------------------------------------------------

def test_page_lists_the_runs_and_picks_a_checkpoint(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "clf"))
    listed = app.table[0].value.index.tolist()
    assert sorted(name.rsplit("_", 1)[-1] for name in listed) == ["ae", "cinn", "clf", "diin", "iin", "protoflow"]
    assert app.sidebar.selectbox(key="run").options == listed
    [checkpoints] = [box for box in app.sidebar.selectbox if box.label == "checkpoint"]
    assert checkpoints.value == f"model-{STEPS}.ckpt"
    assert labels(app.tabs) == ["Explain an image", "Metrics"]
    assert app.metric[0].label == "predicted class" and app.metric[0].value in SHAPES
    assert app.number_input(key="classifier_index").value == 0
    assert len(app.tabs[0].get("vega_lite_chart")) == 1  # the posterior bars


def test_an_uploaded_picture_is_explained_like_the_same_validation_image(demo_logs, monkeypatch):
    """A PNG of validation image 3 (its exact 8-bit pixels) gets the prediction validation image 3 gets."""
    run = run_named(demo_logs, "clf")
    app = page(demo_logs, monkeypatch, run)
    app.number_input(key="classifier_index").set_value(3).run()
    from_dataset = (app.metric[0].value, app.metric[0].proto.delta)
    pixels = load_validation_dataset(Run(demo_logs / run)).arrays.images[3]
    png = io.BytesIO()
    Image.fromarray(pixels).save(png, format="PNG")
    app.radio(key="classifier_source").set_value("upload a picture").run()
    assert not app.metric  # nothing to explain before a picture is uploaded
    app.file_uploader(key="classifier_upload").upload("sprite.png", png.getvalue(), "image/png").run()
    assert_clean(app)
    assert app.image[0].captions == ["uploaded, as the model sees it"]
    assert (app.metric[0].value, app.metric[0].proto.delta) == from_dataset


def test_autoencoder_views(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "ae"))
    assert labels(app.tabs) == ["Reconstructions", "Samples", "Metrics"]
    assert images_after_tab(app, "Reconstructions") == 2 and images_after_tab(app, "Samples") == 1
    app.slider(key="ae_n").set_value(3).run()
    assert_clean(app)
    [inputs, reconstructions] = app.tabs[0].image
    assert len(inputs.value) == len(reconstructions.value) == 3
    app.slider(key="ae_samples_n").set_value(5).run()
    assert len(app.tabs[1].image[0].value) == 5


def test_iin_views(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "iin"))
    assert labels(app.tabs) == ["Samples", "Interpolation", "Metrics"]
    # pictures are served under a hash of their bytes: equal pictures, equal addresses
    app.slider(key="iin_samples_temperature").set_value(0.0).run()
    assert_clean(app)
    assert len(app.tabs[0].image[0].value) == 16 and len(set(app.tabs[0].image[0].value)) == 1  # all decode(0)
    app.slider(key="iin_samples_temperature").set_value(0.5).run()
    assert len(set(app.tabs[0].image[0].value)) == 16
    app.number_input(key="iin_interpolation_b").set_value(5).run()
    app.slider(key="iin_interpolation_steps").set_value(4).run()
    assert_clean(app)
    assert app.tabs[1].image[-1].captions == ["t=0.00", "t=0.33", "t=0.67", "t=1.00"]


def test_diin_views(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "diin"))
    assert labels(app.tabs)[:2] == ["Factor swaps", "Factor walk"]
    captions = [caption for element in app.tabs[0].image for caption in element.captions]
    for factor in ("shape", "color", "residual"):
        assert f"A with {factor} of B" in captions and f"B with {factor} of A" in captions
    assert [s.label for s in app.tabs[1].slider] == ["shape: A → B", "color: A → B", "residual: A → B"]
    app.slider(key="diin_walk_1").set_value(1.0).run()
    assert_clean(app)
    assert images_after_tab(app, "Factor walk") == 2 + 1 + 3  # A, B, moved A, 3 strips

    # swapping any factor between an image and itself changes nothing (pictures are addressed by their bytes)
    app.number_input(key="diin_swap_b").set_value(0).run()
    assert_clean(app)
    [decoded_a, decoded_b] = app.tabs[0].image[2].value
    swaps = [address for row in app.tabs[0].image[3:] for address in row.value]
    assert decoded_a == decoded_b and len(swaps) == 6 and set(swaps) == {decoded_a}


def test_a_stage_named_by_its_run_directory_is_saved_as_the_checkpoint_it_used(demo_logs):
    """The dIIN fixture names its first stage by the autoencoder's run directory alone."""
    ae_run, diin_run = demo_logs / run_named(demo_logs, "ae"), demo_logs / run_named(demo_logs, "diin")
    saved = yaml.safe_load(EdflowRunner.train_config(diin_run).read_text())["model_params"]["first_stage"]
    ae_config = yaml.safe_load(EdflowRunner.train_config(ae_run).read_text())
    assert saved["checkpoint"] == str(checkpoint(ae_run))
    assert saved["model"] == ae_config["model"] and saved["model_params"] == ae_config["model_params"]


def test_the_diin_logs_swap_grids_named_by_factor(demo_logs):
    logged = {path.name.rsplit("_", 1)[0] for path in (demo_logs / run_named(demo_logs, "diin")).rglob("swap_*.png")}
    assert logged == {"swap_shape", "swap_color", "swap_residual"}


def test_invariance_views(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "cinn"))
    assert labels(app.tabs) == ["Invariances", "Attack", "Metrics"]
    [table] = app.tabs[0].dataframe
    rows = table.value
    assert list(rows["compared with the input"]) == ["samples", "floor: reconstruction", "ceiling: another image"]
    assert rows["relative error"].iloc[1] >= 0 and "same prediction" in rows
    assert len(app.tabs[0].image[-1].value) == 8  # the default number of samples
    first = list(app.tabs[0].image[-1].value)
    app.button(key="cinn_resample").click().run()
    assert_clean(app)
    assert app.session_state["cinn_seed"] == 1 and list(app.tabs[0].image[-1].value) != first
    app.slider(key="cinn_temperature").set_value(0.0).run()
    assert len(set(app.tabs[0].image[-1].value)) == 1  # every draw is the flow's mode under this representation
    app.slider(key="cinn_attack_epsilon").set_value(0.2).run()
    assert_clean(app)
    [perturbed, decodes] = app.tabs[1].image[-2:]
    assert [c.split(":")[0] for c in perturbed.captions] == ["clean", "FGSM", "random signs"]
    assert len(decodes.value) == 3


def test_prototype_views(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "protoflow"))
    assert labels(app.tabs) == ["Prototypes", "Explain an image", "Metrics"]
    gallery = app.tabs[0].image
    assert [len(row.value) for row in gallery[:5]] == [2] * 5  # 5 classes x 2 prototypes
    # each prototype's share of the validation images it explains, as the last evaluation recorded it
    step, usage = Run(demo_logs / run_named(demo_logs, "protoflow")).prototype_usage()
    captions = [caption for row in gallery[:5] for caption in row.captions]
    expected = [f"prototype {p} · " + ("dead" if n == 0 else f"{n / sum(usage):.0%}") for p, n in enumerate(usage)]
    assert step == STEPS and sorted(captions) == sorted(expected)
    assert f"{usage.count(0)} of 10 are dead" in app.tabs[0].caption[0].value
    app.slider(key="proto_sample_n").set_value(3).run()
    assert len(app.tabs[0].image[-1].value) == 3
    app.slider(key="proto_nearest_k").set_value(4).run()
    assert_clean(app)
    nearest = app.tabs[1].image[-1].captions
    assert len(nearest) == 4 and all(caption.startswith("prototype ") for caption in nearest)
    similarities = app.tabs[1].dataframe[0].value["similarity"].tolist()
    assert similarities == sorted(similarities, reverse=True)


def test_a_prototype_flow_flags_an_image_unlike_its_data(demo_logs, monkeypatch):
    from invproto.demo.views.prototypes import bits_of, likelihood_rank
    from invproto.losses.protoflow import bits_per_dim, marginal_log_likelihood

    run = Run(demo_logs / run_named(demo_logs, "protoflow"))
    model = load_model(run, run.checkpoints[-1], "cpu")
    dataset = load_validation_dataset(run)
    reference = torch.cat([torch.from_numpy(dataset.get_example(i)["image"]).permute(2, 0, 1)[None]
                           for i in range(len(dataset))])
    with torch.no_grad():
        reference_bits = bits_of(model, reference)
        own_bits, limit, more_likely = likelihood_rank(model, reference[:1], reference_bits)
        expected = bits_per_dim(marginal_log_likelihood(model.class_log_likelihood(reference[:1])[0]), model.data_dims)
        assert own_bits == pytest.approx(float(expected)) and own_bits <= limit and more_likely < 1
        noise = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
        noise_bits, _, noise_rank = likelihood_rank(model, noise, reference_bits)
    assert noise_bits > limit and noise_rank == 1.0  # less likely than every validation image

    # the validation images are scored once per model, not on every rerun of the page
    scored = []
    score = type(model).class_log_likelihood
    monkeypatch.setattr(type(model), "class_log_likelihood",
                        lambda self, images: scored.append(len(images)) or score(self, images))
    st.cache_data.clear()  # the cache outlives a page: other tests may have scored this model already
    app = page(demo_logs, monkeypatch, run.name)
    app.radio(key="proto_explain_source").set_value("upload a picture").run()
    png = io.BytesIO()
    Image.fromarray(((noise[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype("uint8")).save(png, "PNG")
    app.file_uploader(key="proto_explain_upload").upload("noise.png", png.getvalue(), "image/png").run()
    assert not app.exception and not app.error
    assert any("Out of distribution?" in warning.value for warning in app.tabs[1].warning)
    app.slider(key="proto_nearest_k").set_value(2).run()
    assert not app.exception and any("Out of distribution?" in warning.value for warning in app.tabs[1].warning)
    assert scored.count(len(dataset)) == 1, scored  # the reference once; the uploaded image on every run


def test_metrics_view_plots_the_per_epoch_metrics(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "iin"))
    chosen = app.multiselect(key="metrics_chosen")
    assert "bits_per_dim" in chosen.value and "nats_per_dim" in chosen.value
    charts = app.tabs[-1].get("vega_lite_chart")
    assert len(charts) == len(chosen.value)
    spec = json.loads(charts[0].proto.spec)
    assert spec["mark"] == {"type": "line", "point": True}  # one evaluation after one epoch is a visible point


def test_metrics_of_other_runs_can_be_overlaid(demo_logs, monkeypatch):
    from invproto.demo.views.metrics import metric_chart

    iin, diin = Run(demo_logs / run_named(demo_logs, "iin")), Run(demo_logs / run_named(demo_logs, "diin"))
    chart = metric_chart({iin.name: iin.metrics(), diin.name: diin.metrics()}, "bits_per_dim")
    series = set(chart.data["series"])
    assert {"iin · epoch_end", "diin · epoch_end"} <= series
    app = page(demo_logs, monkeypatch, iin.name)
    app.multiselect(key="metrics_compared").set_value([diin.name]).run()
    assert_clean(app)
    charts = app.tabs[-1].get("vega_lite_chart")
    data = b"".join(dataset.data.data for chart in charts for dataset in chart.proto.datasets)
    assert b"diin \xc2\xb7 epoch_end" in data  # the compared run's series, drawn beside (Arrow keeps UTF-8 text)


def test_metrics_of_a_run_still_training_refresh(demo_logs, tmp_path, monkeypatch):
    import os
    import socket

    import psutil

    logs = tmp_path / "logs"
    run_dir = logs / "2000-01-01T00-00-00_training"
    shutil.copytree(demo_logs / run_named(demo_logs, "clf"), run_dir)
    app = page(logs, monkeypatch, run_dir.name)
    assert not any("refresh" in caption.value for caption in app.tabs[-1].caption)
    lock = {"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()}
    (run_dir / "trainer.lock").write_text(json.dumps(lock))  # this process trains it, as far as the lock says
    app = page(logs, monkeypatch, run_dir.name)
    assert any("is training: its metrics refresh every 15 s" in caption.value for caption in app.tabs[-1].caption)
    assert app.tabs[-1].get("vega_lite_chart")  # the curves are still drawn, inside the refreshing fragment
    lock["pid"] = 999_999_999  # a trainer that is gone
    (run_dir / "trainer.lock").write_text(json.dumps(lock))
    app = page(logs, monkeypatch, run_dir.name)
    assert not any("refresh" in caption.value for caption in app.tabs[-1].caption)


def test_widgets_of_one_run_do_not_carry_over_to_the_next(demo_logs, monkeypatch):
    app = page(demo_logs, monkeypatch, run_named(demo_logs, "iin"))
    app.multiselect(key="metrics_chosen").set_value(["loss"]).run()
    app.selectbox(key="run").set_value(run_named(demo_logs, "clf")).run()
    assert_clean(app)
    assert app.multiselect(key="metrics_chosen").value != ["loss"]  # the classifier's own defaults
    assert "accuracy" in app.multiselect(key="metrics_chosen").value


def test_the_run_table_filters_and_sorts_with_integer_steps(demo_logs, tmp_path):
    from invproto.demo.runs import filtered_runs

    logs = tmp_path / "logs"
    shutil.copytree(demo_logs, logs, symlinks=True)
    shutil.rmtree(logs / run_named(demo_logs, "clf") / "train" / "checkpoints")  # a run without a checkpoint
    table = run_table(find_runs(logs))
    assert str(table["step"].dtype) == "Int64" and table["step"].isna().sum() == 1
    assert "922.0000" not in table.to_string() and f"{STEPS}" in table.to_string()
    kinds_of = {name.rsplit("_", 1)[-1] for name in filtered_runs(table, "IIN").index}
    assert kinds_of == {"iin", "diin", "cinn"}  # by kind (IIN, dIIN) or model (ConditionalIIN), any case
    assert set(filtered_runs(table, "autoencoder")["kind"]) == {"autoencoder"}
    assert filtered_runs(table, "nothing like this").empty
    by_step = filtered_runs(table, "", "step")
    assert by_step["step"].isna().tolist()[-1]  # runs without a step last
    assert list(filtered_runs(table, "", "kind")["kind"]) == sorted(table["kind"])


# --- broken runs --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["corrupt", "missing", "another_model"])
def test_a_broken_checkpoint_shows_an_error_box(demo_logs, tmp_path, monkeypatch, damage):
    logs = tmp_path / "logs"
    run_dir = logs / "2000-01-01T00-00-00_broken"
    shutil.copytree(demo_logs / run_named(demo_logs, "ae"), run_dir)
    if damage == "corrupt":
        checkpoint(run_dir).write_bytes(b"not a checkpoint")
    elif damage == "missing":
        shutil.rmtree(run_dir / "train" / "checkpoints")
    else:
        shutil.copy(checkpoint(demo_logs / run_named(demo_logs, "clf")), checkpoint(run_dir))
    app = page(logs, monkeypatch, healthy=False)
    [error] = app.error
    expected = {"corrupt": "cannot load checkpoint", "missing": "has no checkpoint",
                "another_model": "holds {'model': 'invproto.models.classifier.Classifier'"}[damage]
    assert expected in error.value
    assert labels(app.tabs) == ["Metrics"]  # the metrics of the run are still there
