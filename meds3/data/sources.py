"""Registry of the public benchmarks ``meds3 data fetch`` can download, one entry per set.

Each :class:`Source` says where a set lives (a Hugging Face dataset at a revision, a raw file of
a public GitHub repository at a commit, or nowhere public and why), its license, its size and
split, and how one raw record becomes a :class:`MedQuestion` (a normalizer with the signature of
the converters in :mod:`meds3.data.formats`: ``normalize(record, index, ctx)``; those converters
are reused where the source's records have their shape).

Hugging Face revisions default to ``main``: ``meds3 data fetch --revision REV`` pins another one,
and the manifest records the commit the revision resolved to, so a fetch can be repeated exactly.
GitHub entries are pinned to a commit.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from meds3.data import formats
from meds3.data.errors import FieldError
from meds3.data.formats import check_options, letter_answer, lettered, need_str, record_id
from meds3.data.question import LETTERS, MedQuestion

Normalizer = Callable[[Any, int, dict], MedQuestion]
#: ``records(files) -> ((record, ctx), ...)``: how downloaded files become raw records.
RecordReader = Callable[[list[Path]], Iterator[tuple[Any, dict]]]


@dataclass(frozen=True)
class Source:
    """One fetchable (or explicitly unavailable) benchmark.

    Attributes:
        name: set name; the output file is ``<name>.jsonl``.
        group: paper whose evaluation uses it (``meds3``, ``m1``) or ``seed`` (seed questions).
        kind: ``hf`` (Hugging Face dataset), ``github`` (raw file at a commit) or ``none``.
        title: human-readable source name, written to each record's ``source``.
        license: the license as stated by the origin (printed before download, recorded).
        size: approximate number of questions after normalization.
        split: the split used.
        repo: ``owner/name`` of the dataset or repository.
        configs: Hugging Face configs (subsets) read; ``()`` for the default one.
        revision: Hugging Face revision (branch, tag or commit) or GitHub commit.
        paths: files to download: GitHub paths, or Hugging Face ``allow_patterns`` globs
            (``{config}`` and ``{split}`` are filled in; alternatives: per config, the files of
            the first glob that matches are read).
        normalizer: ``(record, index, ctx) -> MedQuestion``.
        reader: how the downloaded files become records (default: every record of every file).
        keep: filter on raw records (``None``: keep all).
        reason: why a ``none`` set cannot be fetched.
        gated: the Hugging Face dataset needs accepted terms and a token (``HF_TOKEN``).
        note: anything else a user must know (printed by ``--list``).
    """

    name: str
    group: str
    kind: str
    title: str
    license: str
    size: int = 0
    split: str = ""
    repo: str = ""
    configs: tuple[str, ...] = ()
    revision: str = "main"
    paths: tuple[str, ...] = ()
    normalizer: Normalizer | None = None
    reader: RecordReader | None = None
    keep: Callable[[Any], bool] | None = None
    reason: str = ""
    gated: bool = False
    note: str = ""
    ctx: dict = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.kind != "none"

    def location(self, revision: str | None = None) -> str:
        """``hf:owner/name[config]@rev``, ``github:owner/name@commit:path`` or ``none``."""
        rev = revision or self.revision
        if self.kind == "hf":
            cfg = f"[{','.join(self.configs)}]" if self.configs else ""
            return f"hf:{self.repo}{cfg}@{rev}"
        if self.kind == "github":
            return f"github:{self.repo}@{rev}:{','.join(self.paths)}"
        return "none"

    def urls(self, revision: str | None = None) -> list[str]:
        """Where the data comes from, for messages."""
        rev = revision or self.revision
        if self.kind == "github":
            return [f"https://raw.githubusercontent.com/{self.repo}/{rev}/{p}" for p in self.paths]
        if self.kind == "hf":
            return [f"https://huggingface.co/datasets/{self.repo}/tree/{rev}"]
        return []

    def pattern_groups(self) -> list[list[str]]:
        """Per config, the ``paths`` globs filled in: alternatives, the first that matches is read."""
        return [[p.format(config=c, split=self.split) for p in self.paths] for c in (self.configs or ("",))]

    def patterns(self) -> list[str]:
        """Hugging Face ``allow_patterns`` for this set (every alternative of every config)."""
        return [p for group in self.pattern_groups() for p in group]


# ---------------------------------------------------------------- record readers

def read_file_records(path: Path) -> list[Any]:
    """Raw records of one downloaded file: JSONL, JSON (a list, or a ``key -> record`` mapping,
    whose keys go to ``ctx["key"]``), CSV with a header, or Parquet (needs ``pyarrow``)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if suffix == ".json":
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        if isinstance(doc, dict):
            return [dict(value, __key__=key) if isinstance(value, dict) else value for key, value in doc.items()]
        return list(doc)
    if suffix == ".csv":
        import csv

        with open(path, encoding="utf-8", newline="") as f:
            return [dict(row) for row in csv.DictReader(f)]
    if suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise RuntimeError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from exc
        return pq.read_table(path).to_pylist()
    raise ValueError(f"{path}: unknown file type {suffix!r} (expected .jsonl, .json, .csv or .parquet)")


def _config_of(path: Path, configs: tuple[str, ...]) -> str:
    for part in path.parts:
        if part in configs:
            return part
    return ""


def all_records(source: Source, files: list[Path]) -> Iterator[tuple[Any, dict]]:
    """Every record of every file, in file order, with ``ctx`` naming file and config."""
    for path in files:
        config = _config_of(path, source.configs)
        for record in read_file_records(path):
            ctx = {"file": path.name, "config": config}
            if isinstance(record, dict) and "__key__" in record:
                record = dict(record)
                ctx["key"] = str(record.pop("__key__"))
            yield record, ctx


def _pubmedqa_split(test: bool) -> RecordReader:
    """PubMedQA ``ori_pqal.json`` (1000 expert-labelled items) restricted to the official test
    split listed in ``test_ground_truth.json`` (``test=True``) or to the other 500."""

    def read(files: list[Path]) -> Iterator[tuple[Any, dict]]:
        by_name = {p.name: p for p in files}
        with open(by_name["ori_pqal.json"], encoding="utf-8") as f:
            pqal = json.load(f)
        with open(by_name["test_ground_truth.json"], encoding="utf-8") as f:
            test_ids = set(json.load(f))
        for key, record in pqal.items():
            if (key in test_ids) == test:
                yield record, {"key": str(key), "file": "ori_pqal.json", "split": "test" if test else "non-test"}

    return read


def _headqa_exams(files: list[Path]) -> Iterator[tuple[Any, dict]]:
    """HEAD-QA's per-language file: ``{"language", "exams": {exam: {name, category, year, data: [...]}}}``."""
    for path in files:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        lang = doc.get("language", "")
        for exam_key, exam in doc.get("exams", {}).items():
            for record in exam.get("data", []):
                yield record, {"exam": exam.get("name") or exam_key, "category": exam.get("category"),
                               "year": exam.get("year"), "language": lang, "file": path.name}


# ---------------------------------------------------------------- normalizers

def by_format(name: str, fallback: Normalizer) -> Normalizer:
    """The converter registered in :mod:`meds3.data.formats` under ``name`` when there is one
    (looked up at call time), else ``fallback``."""

    def convert(record: Any, index: int, ctx: dict) -> MedQuestion:
        fmt = formats.FORMATS.get(name)
        return (fmt.convert if fmt is not None else fallback)(record, index, ctx)

    convert.__name__ = f"{name}_or_{fallback.__name__}"
    convert.__doc__ = fallback.__doc__
    return convert


def _meta(record: dict, drop: tuple[str, ...]) -> dict:
    return {k: v for k, v in record.items() if k not in drop}


def hf_medqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``GBaker/MedQA-USMLE-4-options``: MedQA's JSONL shape plus ``metamap_phrases`` (dropped)."""
    return formats.medqa(_meta(record, ("metamap_phrases",)), index, ctx)


def hf_pubmedqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``qiaojin/PubMedQA`` ``pqa_labeled``: ``pubid``, ``question``, ``context`` {contexts,
    labels, meshes, reasoning_*_pred}, ``long_answer``, ``final_decision``; mapped onto
    ``ori_pqal.json``'s shape and converted by :func:`meds3.data.formats.pubmedqa`."""
    context = record.get("context")
    if not isinstance(context, dict):
        raise FieldError("context", "must be a mapping with 'contexts' and 'labels'")
    ori = {"QUESTION": record.get("question"), "CONTEXTS": list(context.get("contexts") or []),
           "LABELS": list(context.get("labels") or []), "MESHES": list(context.get("meshes") or []),
           "LONG_ANSWER": record.get("long_answer"), "final_decision": record.get("final_decision")}
    return formats.pubmedqa(ori, index, {**ctx, "key": str(record.get("pubid", index))})


def hf_mmlu(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``cais/mmlu``: ``question``, ``subject``, ``choices`` (4 texts), ``answer`` (index 0-3)."""
    options = lettered(record.get("choices") or [], "choices")
    answer = record.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
        raise FieldError("answer", f"must be an option index 0-{len(options) - 1}, got {answer!r}")
    subject = str(record.get("subject") or ctx.get("config") or "")
    return MedQuestion(id=f"mmlu_{subject}_{ctx.get('split', 'test')}_{index}", question=need_str(record, "question"),
                       options=options, answer=LETTERS[answer], source=f"MMLU {subject}",
                       domain="medical_knowledge", metadata={"subject": subject})


def hf_mmlu_pro(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``TIGER-Lab/MMLU-Pro``: ``question_id``, ``question``, ``options`` (up to 10 texts),
    ``answer`` (letter), ``answer_index``, ``cot_content``, ``category``, ``src``."""
    options = lettered(record.get("options") or [], "options")
    answer = letter_answer(need_str(record, "answer"), options)
    index_field = record.get("answer_index")
    if isinstance(index_field, int) and LETTERS[index_field] != answer:
        raise FieldError("answer_index", f"is {index_field} but answer is {answer}")
    return MedQuestion(id=f"mmlu_pro_{record_id(record, 'question_id', str(index))}",
                       question=need_str(record, "question"), options=options, answer=answer,
                       source=f"MMLU-Pro {record.get('category', '')}".strip(), domain="medical_knowledge",
                       metadata=_meta(record, ("question_id", "question", "options", "answer", "answer_index",
                                               "cot_content")))


def _stable_order(key: str, n: int) -> list[int]:
    """A fixed permutation of ``range(n)`` derived from ``key`` (same on every machine)."""
    return sorted(range(n), key=lambda i: hashlib.sha256(f"{key}:{i}".encode()).hexdigest())


def hf_gpqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``Idavidrein/gpqa`` CSV rows: ``Question``, ``Correct Answer``, ``Incorrect Answer 1-3``,
    ``Record ID``, ``Subdomain``, ``High-level domain``. Options are put in a fixed order
    derived from the record id, so the gold letter does not always come first."""
    qid = record_id(record, "Record ID", str(index))
    texts = [need_str(record, "Correct Answer")] + [need_str(record, f"Incorrect Answer {i}") for i in (1, 2, 3)]
    order = _stable_order(qid, len(texts))
    options = lettered([texts[i] for i in order], "answers")
    return MedQuestion(id=f"gpqa_{qid}", question=need_str(record, "Question"), options=options,
                       answer=LETTERS[order.index(0)], source="GPQA (medical subset)", domain="medical_knowledge",
                       metadata={"subdomain": record.get("Subdomain"), "domain": record.get("High-level domain")})


def gpqa_is_medical(record: dict) -> bool:
    """m1's medical GPQA subset: the biology questions of GPQA main (genetics, molecular biology)."""
    return isinstance(record, dict) and str(record.get("High-level domain", "")).strip() == "Biology"


def medbullets(record: dict, index: int, ctx: dict) -> MedQuestion:
    """MedBullets CSV (HanjieChen/ChallengeClinicalQA): ``link``, ``question``, ``opa``..``ope``,
    ``answer_idx`` (letter), ``answer``, ``explanation``; op4 files have no ``ope``."""
    texts = [str(record[k]).strip() for k in ("opa", "opb", "opc", "opd", "ope") if str(record.get(k) or "").strip()]
    options = lettered(texts, "opa..ope")
    answer = letter_answer(need_str(record, "answer_idx"), options, "answer_idx")
    stem = ctx.get("stem", "medbullets")
    return MedQuestion(id=f"{stem}_{index}", question=need_str(record, "question"), options=options, answer=answer,
                       source=ctx.get("source") or "MedBullets", domain="medical_exam",
                       metadata={"link": record.get("link"), "explanation": record.get("explanation")})


_ANSWER_CHOICES = re.compile(r"\n\s*Answer Choices:.*\Z", re.S)


def medxpertqa(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``TsinghuaC3I/MedXpertQA`` Text: ``id``, ``question`` (options appended after
    ``Answer Choices:``, cut off here), ``options`` (letter -> text, A-J), ``label``,
    ``medical_task``, ``body_system``, ``question_type``."""
    options = check_options(record.get("options"))
    answer = letter_answer(need_str(record, "label"), options, "label")
    question = _ANSWER_CHOICES.sub("", need_str(record, "question")).strip()
    return MedQuestion(id=f"medxpertqa_{record_id(record, 'id', str(index))}", question=question, options=options,
                       answer=answer, source="MedXpertQA Text", domain="medical_exam",
                       metadata=_meta(record, ("id", "question", "options", "label")))


HEALTH_FACT_LABELS = ("false", "mixture", "true", "unproven")


def health_fact(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``ImperialCollegeLondon/health_fact``: ``claim_id``, ``claim``, ``main_text``,
    ``explanation``, ``label`` (0 false, 1 mixture, 2 true, 3 unproven; -1 unlabelled)."""
    label = record.get("label")
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < len(HEALTH_FACT_LABELS):
        raise FieldError("label", f"must be 0-3 (false, mixture, true, unproven), got {label!r}")
    options = dict(zip(LETTERS, ("true", "false", "mixture", "unproven")))
    answer = {v: k for k, v in options.items()}[HEALTH_FACT_LABELS[label]]
    claim = need_str(record, "claim")
    return MedQuestion(id=f"healthfact_{record_id(record, 'claim_id', str(index))}",
                       question=f"Is the following health claim true, false, a mixture of both, or unproven?\n"
                                f"Claim: {claim}", options=options, answer=answer, source="PUBHEALTH (health_fact)",
                       domain="health_fact_checking",
                       metadata={"context": str(record.get("main_text") or ""), "claim": claim,
                                 "explanation": record.get("explanation"), "subjects": record.get("subjects")})


def biomrc(record: dict, index: int, ctx: dict) -> MedQuestion:
    """``biomrc`` (BioMRC): ``abstract``, ``title`` (blank ``XXXX`` or ``@placeholder``), ``entities_list``
    (``"@entityN :: (cui, [names])"``), ``answer`` (one of the entities). The question asks which
    entity fills the placeholder; the entities are the options."""
    entities = record.get("entities_list")
    if not isinstance(entities, list) or not entities:
        raise FieldError("entities_list", "must be a non-empty list of entities")
    options = lettered(entities, "entities_list")
    gold = need_str(record, "answer")
    tag = gold.split("::")[0].strip()
    matches = [k for k, v in options.items() if v == gold or v.split("::")[0].strip() == tag]
    if len(matches) != 1:
        raise FieldError("answer", f"is {gold!r}, which is not exactly one of the entities")
    title = need_str(record, "title")
    blank = "XXXX" if "XXXX" in title else "@placeholder"
    return MedQuestion(id=f"{ctx.get('stem', 'biomrc')}_{index}",
                       question=f"Title: {title}\nWhich entity of the abstract should replace {blank} in the title?",
                       options=options, answer=matches[0], source="BioMRC", domain="biomedical_literature",
                       metadata={"context": need_str(record, "abstract")})


# ---------------------------------------------------------------- the registry

MEDSSS = "pixas/MedSSS"
MEDSSS_COMMIT = "82382258a963052263fc723d65ed4e9938beece0"
PUBMEDQA_REPO, PUBMEDQA_COMMIT = "pubmedqa/pubmedqa", "1cbae8e92f72f20c8d3747cbb3bf5bc53554d997"
MEDBULLETS_REPO, MEDBULLETS_COMMIT = "HanjieChen/ChallengeClinicalQA", "d20bfca3cff061460fc216e85899a86e52da4934"
MMLU_MEDICAL = ("anatomy", "clinical_knowledge", "college_biology", "college_medicine", "medical_genetics",
                "professional_medicine")
MEDSSS_LICENSE = "not stated by the data's origin (pixas/MedSSS repository: MIT)"

SOURCES: dict[str, Source] = {}


def register_source(source: Source) -> Source:
    """Add (or replace) a registry entry."""
    SOURCES[source.name] = source
    return source


for _s in (
    # ---- MedS3's eleven
    Source("medqa", "meds3", "hf", "MedQA-USMLE 4 options", "MIT (jind11/MedQA)", 1273, "test",
           repo="GBaker/MedQA-USMLE-4-options", paths=("*{split}*.jsonl", "*{split}*.parquet"), normalizer=hf_medqa),
    Source("medqa_5opt", "meds3", "github", "MedQA-USMLE 5 options", "MIT (jind11/MedQA)", 1273, "test",
           repo="UCSC-VLAA/MedReason", revision="02b51f1df232198daa53aed1542615823e95350e",
           paths=("eval_data/medqa_test.jsonl",), normalizer=formats.medqa),
    Source("medmcqa", "meds3", "hf", "MedMCQA", "MIT (medmcqa/medmcqa); Hub card: apache-2.0", 4183, "validation",
           repo="openlifescienceai/medmcqa", paths=("data/{split}-*",), normalizer=formats.medmcqa,
           ctx={"cop_base": 0}, note="the test split has no public labels; the dev (validation) split is used"),
    Source("pubmedqa", "meds3", "github", "PubMedQA PQA-L", "MIT (pubmedqa/pubmedqa)", 500, "test",
           repo=PUBMEDQA_REPO, revision=PUBMEDQA_COMMIT, paths=("data/ori_pqal.json", "data/test_ground_truth.json"),
           normalizer=formats.pubmedqa, reader=_pubmedqa_split(test=True),
           note="the official 500-question test split of the 1000 expert-labelled items"),
    Source("pubmedqa_hf", "meds3", "hf", "PubMedQA PQA-L", "MIT", 1000, "train", repo="qiaojin/PubMedQA",
           configs=("pqa_labeled",), paths=("{config}/{split}-*",), normalizer=hf_pubmedqa,
           note="all 1000 expert-labelled items (test and non-test); 'pubmedqa' is the 500-item test split"),
    Source("mmlu_medical", "meds3", "hf", "MMLU medical subsets", "MIT", 1089, "test", repo="cais/mmlu",
           configs=MMLU_MEDICAL, paths=("{config}/{split}-*",), normalizer=hf_mmlu),
    Source("mmlu_nutrition_virology", "meds3", "hf", "MMLU nutrition and virology", "MIT", 472, "test",
           repo="cais/mmlu", configs=("nutrition", "virology"), paths=("{config}/{split}-*",), normalizer=hf_mmlu,
           note="the rest of MedS3's med_mmlu"),
    Source("bioasq", "meds3", "github", "BioASQ yes/no (MedS3 copy)",
           MEDSSS_LICENSE + "; BioASQ terms of use apply", 618, "test", repo=MEDSSS, revision=MEDSSS_COMMIT,
           paths=("evaluation_data/bioasq.json",), normalizer=formats.meds3_conversations),
    Source("pubhealth", "meds3", "github", "PubHealth (MedS3 copy)", MEDSSS_LICENSE, 1231, "test", repo=MEDSSS,
           revision=MEDSSS_COMMIT, paths=("evaluation_data/pubhealth.json",), normalizer=formats.meds3_conversations),
    Source("drugdose", "meds3", "github", "Drug dose extraction (MedS3 copy)", MEDSSS_LICENSE, 23, "test",
           repo=MEDSSS, revision=MEDSSS_COMMIT, paths=("evaluation_data/drugdose.json",),
           normalizer=formats.meds3_conversations, note="open answers, checked by span F1"),
    Source("biomrc", "meds3", "hf", "BioMRC (small B)", "not stated on the Hub card; see the BioMRC paper",
           6250, "test", repo="biomrc", configs=("biomrc_small_B",), revision="refs/convert/parquet",
           paths=("{config}/{split}/*",), normalizer=by_format("biomrc", biomrc),
           note="the Hub's Parquet conversion of a script-based dataset; MedS3 samples its own subset"),
    Source("healthfact", "meds3", "hf", "PUBHEALTH (health_fact)", "MIT", 1235, "test",
           repo="ImperialCollegeLondon/health_fact", revision="refs/convert/parquet",
           paths=("default/{split}/*",), normalizer=by_format("healthfact", health_fact),
           keep=lambda r: r.get("label", -1) != -1),
    Source("ddxplus", "meds3", "none", "DDXPlus", "CC-BY-4.0 (raw release)", 0, "test",
           reason="MedS3's DDXPlus questions come from MedS-Bench and are not published as a fixed file; the "
                  "public DDXPlus release (figshare, CC-BY-4.0) holds coded patient records: download it by hand "
                  "and read it with format 'ddxplus'"),
    Source("seer", "meds3", "none", "SEER", "SEER Research Data Use Agreement", 0, "test",
           reason="SEER data is released only under a signed data-use agreement that forbids redistribution"),
    # ---- m1's
    Source("mmlu_pro_health", "m1", "hf", "MMLU-Pro health", "MIT", 818, "test", repo="TIGER-Lab/MMLU-Pro",
           paths=("data/{split}-*",), normalizer=hf_mmlu_pro, keep=lambda r: r.get("category") == "health"),
    Source("gpqa_medical", "m1", "hf", "GPQA (medical subset)", "CC-BY-4.0", 78, "train", repo="Idavidrein/gpqa",
           configs=("gpqa_main",), paths=("{config}.csv",), normalizer=hf_gpqa, keep=gpqa_is_medical, gated=True,
           note="gated: accept the terms on the Hub and set HF_TOKEN; the authors ask that examples not be "
                "reposted online; size approximate"),
    Source("medbullets_op4", "m1", "github", "MedBullets 4 options",
           "not stated (HanjieChen/ChallengeClinicalQA); questions (c) Medbullets", 308, "test",
           repo=MEDBULLETS_REPO, revision=MEDBULLETS_COMMIT, paths=("medbullets/medbullets_op4.csv",),
           normalizer=medbullets),
    Source("medbullets_op5", "m1", "github", "MedBullets 5 options",
           "not stated (HanjieChen/ChallengeClinicalQA); questions (c) Medbullets", 308, "test",
           repo=MEDBULLETS_REPO, revision=MEDBULLETS_COMMIT, paths=("medbullets/medbullets_op5.csv",),
           normalizer=medbullets),
    Source("medxpertqa_text", "m1", "hf", "MedXpertQA Text", "MIT", 2450, "test", repo="TsinghuaC3I/MedXpertQA",
           configs=("Text",), paths=("{config}/{split}*",), normalizer=medxpertqa),
    Source("lancet", "m1", "none", "The Lancet clinical cases", "journal copyright", 0, "test",
           reason="case questions are copyrighted by the journal; no public, redistributable file"),
    Source("nejm", "m1", "none", "NEJM clinical cases", "journal copyright", 0, "test",
           reason="case questions are copyrighted by the journal; no public, redistributable file"),
    # ---- seed questions for self-evolution (examples/configs/evolve_shared.yaml)
    Source("pubmedqa_seed", "seed", "github", "PubMedQA PQA-L", "MIT (pubmedqa/pubmedqa)", 500, "non-test",
           repo=PUBMEDQA_REPO, revision=PUBMEDQA_COMMIT, paths=("data/ori_pqal.json", "data/test_ground_truth.json"),
           normalizer=formats.pubmedqa, reader=_pubmedqa_split(test=False),
           note="the 500 expert-labelled items outside the test split (disjoint from 'pubmedqa')"),
    Source("headqa_en_dev", "seed", "github", "HEAD-QA English",
           "MIT repository (aghie/head-qa); exam content (c) Ministerio de Sanidad, reuse conditions in its README",
           1366, "dev", repo="claudiaqw/head-qa-afi", revision="9a8c0b3be470a1d3a271dac15e9b0ef400e70d75",
           paths=("data/HEAD_EN/dev_HEAD_EN.json",), normalizer=formats.headqa, reader=_headqa_exams),
    # ---- seed questions for the paper-like mix (seed_data/mix_paper.yaml): training splits only
    Source("medqa_train", "seed", "hf", "MedQA-USMLE 4 options", "MIT (jind11/MedQA)", 10178, "train",
           repo="GBaker/MedQA-USMLE-4-options", paths=("*{split}*.jsonl", "*{split}*.parquet"), normalizer=hf_medqa,
           note="the official training split (disjoint from 'medqa', the test split)"),
    Source("medmcqa_train", "seed", "hf", "MedMCQA", "MIT (medmcqa/medmcqa); Hub card: apache-2.0", 182822, "train",
           repo="openlifescienceai/medmcqa", paths=("data/{split}-*",), normalizer=formats.medmcqa,
           ctx={"cop_base": 0}, note="the training split (disjoint from 'medmcqa', the validation split)"),
    Source("pubmedqa_artificial", "seed", "hf", "PubMedQA PQA-A", "MIT", 211269, "train", repo="qiaojin/PubMedQA",
           configs=("pqa_artificial",), paths=("{config}/{split}-*",), normalizer=hf_pubmedqa,
           note="automatically generated yes/no questions, not the expert-labelled PQA-L items; size approximate"),
    Source("biomrc_train", "seed", "hf", "BioMRC (small B)", "not stated on the Hub card; see the BioMRC paper",
           87000, "train", repo="biomrc", configs=("biomrc_small_B",), revision="refs/convert/parquet",
           paths=("{config}/{split}/*",), normalizer=by_format("biomrc", biomrc),
           note="the training split (disjoint from 'biomrc', the test split); size approximate"),
    Source("healthfact_train", "seed", "hf", "PUBHEALTH (health_fact)", "MIT", 9800, "train",
           repo="ImperialCollegeLondon/health_fact", revision="refs/convert/parquet",
           paths=("default/{split}/*",), normalizer=by_format("healthfact", health_fact),
           keep=lambda r: r.get("label", -1) != -1,
           note="the labelled training claims (disjoint from 'healthfact', the test split); size approximate"),
):
    register_source(_s)


def get_source(name: str) -> Source:
    """The registry entry ``name``; KeyError listing the known names otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(SOURCES)}") from None
