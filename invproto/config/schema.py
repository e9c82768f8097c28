"""Typed schemas of the run config: every top-level key invproto or edflow reads.

Sections whose content depends on a component (``model_params``,
``iterator_params``, ``loss.params``, callback kwargs) are checked against that
component's own schema, see :func:`invproto.config.targets.schema_for`.

omegaconf checks types only. A field declared with :func:`checked` also has a
range (``gt``: greater than, ``ge``: at least) or a set of ``choices``;
:func:`invproto.config.validation.check_section` tests them after the types,
so ``optimizer.lr: 0`` fails before any step, naming the key::

    lr: float = checked(1.0e-3, gt=0)
    schedule: str = checked("constant", choices=("constant", "cosine", "linear"))

A null value (an ``Optional`` field left unset) passes every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import MISSING


def checked(default: Any = MISSING, *, gt: float | None = None, ge: float | None = None,
            choices: Sequence | None = None) -> Any:
    """A dataclass field with a range (``> gt``, ``>= ge``) or ``choices``, checked by ``check_section``."""
    return field(default=default, metadata={"gt": gt, "ge": ge, "choices": tuple(choices) if choices else None})


@dataclass
class DatasetsConfig:
    """Import paths of edflow datasets; edflow requires both splits."""

    train: str = MISSING
    validation: str = MISSING


@dataclass
class DataParams:
    """Where data lives and how the validation split is carved from train."""

    root: Optional[str] = None  # else $INVPROTO_DATA, else ./data
    validation_size: int = checked(5000, ge=0)  # examples held out of the official train split
    split_seed: int = checked(0, ge=0)  # seed of the train/validation partition
    download: bool = True  # let torchvision download missing files


@dataclass
class OptimizerParams:
    """Optimizer and learning-rate schedule (per optimizer step)."""

    name: str = checked("adam", choices=("adam", "adamw", "sgd"))
    lr: float = checked(1.0e-3, gt=0)
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])  # adam/adamw
    momentum: float = checked(0.9, ge=0)  # sgd
    weight_decay: float = checked(0.0, ge=0)
    schedule: str = checked("constant", choices=("constant", "cosine", "linear"))
    warmup_steps: int = checked(0, ge=0)  # linear warm-up from 0 before the schedule
    decay_start: int = checked(0, ge=0)  # linear: constant until this step, then linear to 0
    grad_clip_norm: Optional[float] = checked(None, gt=0)


@dataclass
class PerformanceParams:
    """How the training step runs on the hardware (:mod:`invproto.iterators.performance`); all off by default."""

    # null | bf16 | fp16: forward and loss under autocast (fp16 with a grad scaler)
    amp: Optional[str] = checked(None, choices=("bf16", "fp16"))
    compile: bool = False  # torch.compile the training step (forward + loss)
    compile_backend: str = "inductor"  # any torch.compile backend (aot_eager: tracing without code generation)
    channels_last: bool = False  # model weights and 4-d inputs in NHWC memory layout


@dataclass
class ComponentSpec:
    """An object built by :func:`invproto.config.instantiate.instantiate`."""

    target: str = MISSING
    params: Dict[str, Any] = field(default_factory=dict)


@dataclass
class WandbConfig:
    active: bool = False
    project: Optional[str] = None
    entity: Optional[str] = None
    handlers: List[str] = field(default_factory=lambda: ["scalars", "images"])


@dataclass
class IntegrationsConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    tensorboard: Any = None
    git: bool = False


@dataclass
class EvalPipelineConfig:
    """Extra evaluation callbacks (name -> import path) and their kwargs."""

    callbacks: Dict[str, str] = field(default_factory=dict)
    callback_kwargs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """The whole config after edflow stacked the ``-b`` files."""

    # what runs (edflow builds these from import paths)
    iterator: str = MISSING
    model: str = MISSING
    datasets: DatasetsConfig = field(default_factory=DatasetsConfig)
    experiment_name: Optional[str] = None
    # invproto sections
    model_params: Any = None  # checked against the model's Params
    iterator_params: Any = None  # checked against the iterator's Params
    dataset_params: Any = None  # checked against the datasets' Params
    loss: Optional[ComponentSpec] = None
    data: DataParams = field(default_factory=DataParams)
    optimizer: OptimizerParams = field(default_factory=OptimizerParams)
    performance: PerformanceParams = field(default_factory=PerformanceParams)
    seed: int = checked(0, ge=0)
    # schedule and logging (edflow)
    batch_size: int = checked(MISSING, ge=1)  # the global batch: split evenly across torchrun processes
    test_batch_size: Optional[int] = checked(None, ge=1)
    num_epochs: Optional[int] = checked(None, ge=1)
    num_steps: Optional[int] = checked(None, ge=1)
    log_freq: int = checked(1000, ge=1)
    start_log_freq: int = checked(1, ge=1)
    ckpt_freq: Optional[int] = checked(None, ge=1)
    ckpt_zero: bool = False
    keep_checkpoints: Optional[int] = checked(None, ge=1)  # the newest N checkpoints of a run (None: all)
    hook_freq: int = checked(1, ge=1)
    n_data_processes: Optional[int] = checked(None, ge=1)  # default: the machine's core count
    n_prefetch: int = checked(1, ge=1)
    error_on_timeout: bool = False
    max_batches_per_epoch: Optional[int] = checked(None, ge=1)
    integrations: IntegrationsConfig = field(default_factory=IntegrationsConfig)
    eval_pipeline: EvalPipelineConfig = field(default_factory=EvalPipelineConfig)
    # keys edflow writes into the configs it saves (accepted on `-p`)
    eval_hook: Any = None
    train_ops: Any = None
    log_ops: Any = None
    test_mode: bool = False
    nogpu: bool = False
    eval_all: bool = False
    eval_forever: bool = False
    eval_functor: Optional[str] = None
    val_freq: Optional[int] = checked(None, ge=1)
    code_root: Optional[str] = None
    debug: Any = None


@dataclass
class ExploreConfig:
    """What a dataset reads when edflow's explorer builds it: ``edexplore --dataset <path>``."""

    dataset: str = MISSING
    data: DataParams = field(default_factory=DataParams)
    dataset_params: Any = None
    seed: int = checked(0, ge=0)
