"""Shared fixtures: a tiny random-weight BERT with a real WordPiece tokenizer, and small learnable data."""

from __future__ import annotations

import gc
import logging
import os
import random
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread per process: each xdist worker trains on one core, and the commands the tests start (bertfit, Ray
# workers, torchrun) would otherwise take both cores each and spin against the other worker's training.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
POSITIVE = ["good", "great", "love", "happy", "excellent", "wonderful", "fun", "nice"]
NEGATIVE = ["bad", "awful", "hate", "sad", "terrible", "boring", "poor", "ugly"]
FILLER = [
    "the",
    "movie",
    "was",
    "really",
    "a",
    "film",
    "this",
    "i",
    "it",
    "very",
    "and",
    "story",
    "plot",
    "so",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def sentiment_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Short texts whose label is set by one sentiment word among filler words: learnable in seconds."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session", autouse=True)
def _token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tokenized training data goes to a temporary cache, not the user's ~/.cache (subprocesses inherit it)."""
    old = os.environ.get("BERTFIT_CACHE")
    os.environ["BERTFIT_CACHE"] = str(tmp_path_factory.mktemp("token-cache"))
    yield
    if old is None:
        os.environ.pop("BERTFIT_CACHE", None)
    else:
        os.environ["BERTFIT_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, hidden-32 BERT with random weights and a WordPiece tokenizer, saved as a local model folder."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-bert")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,!?'-")
    vocab_list = SPECIAL + POSITIVE + NEGATIVE + FILLER + letters + [f"##{c}" for c in letters]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],  # as BERT's own tokenizers declare
    )
    ids = fast("great movie")["input_ids"]
    assert vocab["[UNK]"] not in ids and ids[0] == vocab["[CLS]"], "known words must not encode to [UNK]"
    fast.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentiment_data() -> tuple[pd.DataFrame, pd.DataFrame]:
    return sentiment_frame(320, seed=1), sentiment_frame(80, seed=2)


TINY_TRAIN = {"epochs": 4, "lr": 3e-3, "batch_size": 16, "warmup": 0.0}


@pytest.fixture(scope="session")
def tiny_trained(tiny_model_dir: Path, sentiment_data, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny model fine-tuned on the sentiment data, shared by tests that only read it."""
    import bertfit

    train_df, val_df = sentiment_data
    out = tmp_path_factory.mktemp("trained") / "model"
    bertfit.train(train_df, out, validation=val_df, model=str(tiny_model_dir), progress=False, **TINY_TRAIN)
    return out


class Stop(Exception):
    """Stands in for a kill: raised right after a checkpoint is committed (test_killed_run_... kills for real)."""


def stop_after(step: int):
    """CommitCheckpoints.on_save that ends the run once the checkpoint of `step` (or a later one) is committed."""
    from bertfit.training.checkpoints import CommitCheckpoints

    commit = CommitCheckpoints.on_save

    def on_save(self, args, state, control, **kw):
        commit(self, args, state, control, **kw)
        if state.global_step >= step:
            raise Stop

    return on_save


@contextmanager
def cli_state_restored() -> Iterator[None]:
    """The CLI points the 'bertfit' logger at the runner's (soon closed) stderr; restore it afterwards."""
    from bertfit import cli

    logger = logging.getLogger("bertfit")
    saved = (list(logger.handlers), logger.level, logger.propagate, dict(cli.state))
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    cli.state.update(saved[3])


@pytest.fixture
def restore_cli_state() -> Iterator[None]:
    with cli_state_restored():
        yield


class RayCluster:
    """A local 2-CPU Ray cluster, started for the first test that needs it and stopped after the last of a run of
    such tests (pytest_runtest_teardown): the process unit orders its Ray tests together, so the cluster starts once
    (3-4 s of CPU a start) and does not sit idle under the tests that follow (an idle cluster kept 0.27 of a core
    busy, 2.7 core-seconds in 10 s, on a 2-core AVX-512 EPYC, 2026-12-06)."""

    def __init__(self) -> None:
        self.running = False

    def start(self) -> None:
        if self.running:
            return
        ray = pytest.importorskip("ray", reason="the ray engine needs: pip install 'bertfit[ray]'")
        # Ray starts its workers at niceness 15: beside the other worker's training (or a CPU hog) the replicas got
        # almost no CPU, and one test took 222 s instead of 18 (a fresh-clone make test beside a hog, 2026-12-06).
        # The raylet reads its settings from RAY_* variables when it starts; 0 makes the replicas share the cores.
        saved = os.environ.get("RAY_worker_niceness")
        os.environ["RAY_worker_niceness"] = "0"
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        finally:
            if saved is None:
                os.environ.pop("RAY_worker_niceness")
            else:
                os.environ["RAY_worker_niceness"] = saved
        self.running = True

    def stop(self) -> None:
        if self.running:
            import ray

            ray.shutdown()
            self.running = False


CLUSTER = RayCluster()


def uses_ray(item: pytest.Item | None) -> bool:
    return item is not None and ("ray_cluster" in getattr(item, "fixturenames", ()) or item.nodeid.endswith("[ray]"))


@pytest.fixture
def ray_cluster() -> None:
    """The local 2-CPU Ray cluster, running for this test (see RayCluster)."""
    CLUSTER.start()


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if not uses_ray(nextitem):
        CLUSTER.stop()


# -- the other kinds of model, each trained once per session: multi-label, sentence pairs, sliding windows ---------

MULTI_TRAIN = {**TINY_TRAIN, "epochs": 10}  # one sigmoid per label learns more slowly than a softmax


def multilabel_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Texts with a positive word, a negative word, both or neither; the label set names which are there."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        labels = [["positive"], ["positive", "negative"], ["negative"], []][i % 4]
        words = rng.sample(FILLER, rng.randint(3, 7))
        for label in labels:
            words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label == "positive" else NEGATIVE))
        rows.append({"text": " ".join(words), "labels": labels})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def small_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT at hidden size 64: at 32, the two sigmoids of this task reliably learned only one label
    (one detector stayed at 0.5 through 10 epochs, whatever the learning rate or seed); at 64 both are learned."""
    from transformers import BertConfig

    folder = tmp_path_factory.mktemp("small-bert")
    shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
    config = BertConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size, config.num_attention_heads = 64, 128, 4
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def multi_model(small_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    import bertfit

    train, val = multilabel_frame(480, seed=1), multilabel_frame(120, seed=2)
    out = tmp_path_factory.mktemp("multi") / "model"
    return bertfit.train(
        train, out, validation=val, model=str(small_model_dir), label_col="labels", progress=False, **MULTI_TRAIN
    )


def pair_frame(n: int, seed: int = 0) -> pd.DataFrame:
    """Premise and hypothesis: 'agree' when both carry a word of the same sentiment. Either text alone says
    nothing: each sentiment appears in both texts equally often under both labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first_pos, agree = i % 2 == 0, (i // 2) % 2 == 0
        second_pos = first_pos if agree else not first_pos
        a = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if first_pos else NEGATIVE)]
        b = rng.sample(FILLER, 3) + [rng.choice(POSITIVE if second_pos else NEGATIVE)]
        rng.shuffle(a), rng.shuffle(b)
        rows.append({"premise": " ".join(a), "hypothesis": " ".join(b), "label": "agree" if agree else "differ"})
    return pd.DataFrame(rows)


@pytest.fixture(scope="session")
def pair_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pair model trained through the CLI (--pair: the two --text-col columns are the two texts)."""
    from typer.testing import CliRunner

    from bertfit.cli import app

    folder = tmp_path_factory.mktemp("pairs")
    pair_frame(320, seed=1).to_csv(folder / "train.csv", index=False)
    pair_frame(80, seed=2).to_csv(folder / "val.csv", index=False)
    settings = [f"--{k.replace('_', '-')}={v}" for k, v in TINY_TRAIN.items()]
    args = ["train", str(folder / "train.csv"), "--validation", str(folder / "val.csv"), "-o", str(folder / "m"),
            "--model", str(tiny_model_dir), "--text-col", "premise", "--text-col", "hypothesis", "--pair"]  # fmt: skip
    with cli_state_restored():
        result = CliRunner().invoke(app, args + settings)
    assert result.exit_code == 0, result.output
    return folder / "m"


LONG_WORDS = ["movie", "plot", "story", "film", "really", "very"]


def long_text(n: int, offset: int = 0) -> str:
    return " ".join(LONG_WORDS[(i + offset) % len(LONG_WORDS)] for i in range(n))


@pytest.fixture(scope="session")
def sliding_model(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Trained on windows of 8 tokens (stride 2), scored per document by the mean of its windows' logits."""
    import bertfit

    train, val = sentiment_frame(320, seed=1), sentiment_frame(80, seed=2)
    out = tmp_path_factory.mktemp("sliding") / "m"
    return bertfit.train(train, out, validation=val, model=str(tiny_model_dir), long="sliding", max_length=8,
                         stride=2, progress=False, **TINY_TRAIN)  # fmt: skip


# -- two workers (pytest-xdist: `make test` passes -n 2 --dist loadfile) ---------------------------------------------
# A test file is one unit of work, so the models a file trains once (module fixtures) are trained on one worker. The
# tests that start processes of their own (a Ray cluster, torchrun, CPU hogs) form one unit, so no two of them run at
# once. Units are handed out in the order below, the longest first (seconds in a suite run on a 2-core AVX-512 EPYC,
# fp32, 2026-12-06), so that no worker is left alone with a long one at the end. xdist gives a worker another unit
# whenever it has at most 2 tests pending, so a unit of one test is at once followed by the next unit on the same
# worker: the first unit (GoEmotions, one test) takes the third (four tests) with it, and the one-test units further
# down follow the many-test units, not each other. This is xdist's own scope scheduler with our split; the
# xdist_group mark is not used, because with pytest 9.2 the group suffix xdist writes into the node id no longer
# takes effect (pytest-dev/pytest-xdist#1386). A served model (`bertfit serve` in a subprocess) and Chromium count
# as processes too.
PROCESS_GROUP = "processes"
STARTS_PROCESSES = {"test_distributed.py", "test_ddp.py", "test_determinism.py", "test_serve_browser.py",
                    "test_serve_ray.py"}  # fmt: skip
LONGEST_FIRST = [
    "test_real_multilabel.py",  # 194 s
    PROCESS_GROUP,  # ~195 s
    "test_integration.py",  # 172 s
    "test_real_long.py",  # 89 s
    "test_encoders.py",  # 47 s alone (six tiny architectures, 2026-12-07)
    "test_yelp_seed.py",  # 37 s
    "test_predict_stream.py",  # 36 s
    "test_engines.py",  # 38 s alone on a quiet core, its four trained models (9 s) included; 60 s beside others
    "test_cli.py",  # 33 s
    "test_resume.py",  # 32 s
    "test_locks.py",  # 27 s
    "test_tune.py",  # 25 s alone (a tune killed and continued in a subprocess, 2026-12-07)
    "test_real_pairs.py",  # 18 s
    "test_inputs.py",  # 21 s
    "test_publish.py",  # 20 s
    "test_training.py",  # 14 s
]


def work_unit(nodeid: str) -> str:
    """The unit a test is scheduled in: its file, or the one unit of tests that start processes."""
    path, _, name = nodeid.partition("::")
    file = path.rsplit("/", 1)[-1]
    if file in STARTS_PROCESSES or (file == "test_passthrough.py" and "[ray]" in name):
        return PROCESS_GROUP
    if file == "test_serve.py" and name.startswith("test_served_process"):  # a `bertfit serve` subprocess
        return PROCESS_GROUP
    return file


# Whole files of the tiny model's tests that kill and rerun commands, start servers or their model processes, export
# and gate engines, or tune: marked slow, so `make test-fast` leaves them to `make test`. With them it took 338 s on
# 2 EPYC cores (830 tests), 115 s without them (678 tests, 2026-12-07); they are ~390 s of the full suite's test time.
SLOW_FILES = {"test_engines.py", "test_encoders.py", "test_engine_choice.py", "test_predict_stream.py",
              "test_resume.py", "test_locks.py", "test_tune.py", "test_publish.py", "test_serve.py",
              "test_review.py"}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.partition("::")[0].rsplit("/", 1)[-1] in SLOW_FILES:
            item.add_marker(pytest.mark.slow)
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    # stable: a file's own order is kept; within a unit, the tests that need the Ray cluster come last, together
    items.sort(key=lambda item: (rank.get(work_unit(item.nodeid), len(rank)), uses_ray(item)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what the imports and the collection made: the modules of torch, transformers, Ray and the rest are
    ~600,000 objects that live to the end, and every full garbage collection walks them all again (0.4 s each on a
    2-core EPYC; Trainer.train starts with one, and Python starts more as objects pile up). Frozen, they are skipped;
    what the tests make afterwards is collected as before. test_inputs.py and test_cli.py together: 55-60 s frozen,
    63-69 s not (2026-12-07)."""
    gc.collect()
    gc.freeze()


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):
        def __init__(self, config: pytest.Config, log=None) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # keep the collection order: longest units first

        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnits(config, log)
