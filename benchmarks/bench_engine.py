"""Generation engine benchmark: throughput, efficiency against the machine's matmul peak, and
what prefill sharing and prefix reuse save.

Each throughput point is the best of ``--repeats`` runs and the matmul peak the best of its
measurements, so load from other processes can only lower the reported fractions.

Run (CPU, both backends, the embedded model)::

    python benchmarks/bench_engine.py --backends transformers vllm --json runs/bench_engine.json

Reports, for each backend and batch size (distinct prompts, one sample each, a fixed number of
new tokens): generated tokens/s; achieved model FLOP/s = 2 x parameters x generated tokens/s,
as a fraction of the float32 matmul GFLOP/s measured in the same run (and the same with the
computed prompt tokens counted too); and prompt tokens computed for one prompt sampled n times
with and without n-sharing, and for MCTS-like child prompts with and without the prefix cache.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time

QUESTIONS = [
    "A 45-year-old man has crushing chest pain radiating to the left arm. Most likely diagnosis?",
    "Which vitamin deficiency causes scurvy, and what are its signs?",
    "A child has a barking cough and inspiratory stridor. What is the likely cause?",
    "What is the first-line treatment for uncomplicated hypertension in adults?",
    "A patient on warfarin starts taking ciprofloxacin. What interaction should you expect?",
    "Which electrolyte abnormality causes peaked T waves on an ECG?",
    "What are the diagnostic criteria for type 2 diabetes mellitus?",
    "A woman has fatigue, weight gain and cold intolerance. Which test should be ordered first?",
]


def matmul_gflops(size: int = 2048, repeats: int = 8) -> float:
    """Float32 GFLOP/s of a square matmul on this machine (best of three timings)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - t) / 1e9)
    return best


def prompts(engine, count: int, tag: str) -> list[str]:
    """``count`` distinct chat prompts; a new ``tag`` keeps earlier calls' caches from
    serving them (only the shared chat-template header can be reused)."""
    return [engine.chat_prompt([{"role": "user", "content":
                                 f"{tag} case {i}. {QUESTIONS[i % len(QUESTIONS)]} "
                                 "Think step by step."}])
            for i in range(count)]


def count_params(path: str) -> tuple[int, int]:
    """(parameters, parameters less the input embedding) of the model at ``path``."""
    from safetensors import safe_open
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path).get_text_config()
    total = 0
    for name in os.listdir(path):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(path, name), "pt") as f:
                total += sum(_numel(f.get_slice(key).get_shape()) for key in f.keys())
    return total, total - cfg.vocab_size * cfg.hidden_size


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def throughput(engine, batch: int, new_tokens: int, params_count: tuple[int, int],
               tag: str = "") -> dict:
    """Time one generate call of ``batch`` distinct prompts x ``new_tokens`` tokens.

    ``params_count`` is (all parameters, parameters without the input embedding): a generated
    token costs 2 x all (the tied embedding is the output head), a prompt token 2 x the rest
    (its logits are not computed).
    """
    from meds3.engines import GenerationRequest, SamplingParams

    reqs = [GenerationRequest(prompt=p, params=SamplingParams(
        temperature=0.7, top_p=0.9, max_new_tokens=new_tokens, seed=i, ignore_eos=True))
        for i, p in enumerate(prompts(engine, batch, f"Throughput{tag} {batch}x{new_tokens}"))]
    t = time.perf_counter()
    results = engine.generate(reqs)
    dt = time.perf_counter() - t
    gen = sum(r.generated_tokens for r in results)
    computed = sum(r.prompt_tokens_computed for r in results)
    gflops = 2 * params_count[0] * gen / dt / 1e9
    gflops_all = gflops + 2 * params_count[1] * computed / dt / 1e9
    return dict(batch=batch, seconds=round(dt, 2), generated_tokens=gen,
                prompt_tokens_computed=computed, tokens_per_s=round(gen / dt, 1),
                model_gflops=round(gflops, 1), model_gflops_with_prompt=round(gflops_all, 1))


def generate_baseline(engine, batch: int, new_tokens: int) -> dict:
    """transformers' own ``model.generate`` on the same work (left padding, DynamicCache)."""
    import torch

    tok = engine.tokenizer
    texts = prompts(engine, batch, f"Baseline {batch}x{new_tokens}")
    tok.padding_side = "left"
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    model = engine.model
    head = model.lm_head
    if hasattr(head, "linear"):  # measure stock transformers: undo the chunked head
        model.lm_head = head.linear
    model.set_attn_implementation("sdpa")
    torch.manual_seed(0)
    try:
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=0.7, top_p=0.9,
                                 max_new_tokens=new_tokens, min_new_tokens=new_tokens)
        dt = time.perf_counter() - t
    finally:
        model.lm_head = head
        model.set_attn_implementation("meds3_sdpa")
    gen = (out.shape[1] - enc.input_ids.shape[1]) * batch
    return dict(batch=batch, seconds=round(dt, 2), generated_tokens=gen,
                tokens_per_s=round(gen / dt, 1))


def n_sharing(model: str, engine, n: int = 16) -> dict:
    """Prompt tokens computed for one prompt sampled n times, shared vs not shared."""
    from meds3.engines import GenerationRequest, SamplingParams, build_engine

    req = GenerationRequest(prompt=prompts(engine, 1, "Sharing")[0], n=n, params=SamplingParams(
        temperature=0.7, top_p=0.9, max_new_tokens=32, seed=1, ignore_eos=True))
    out = {"n": n}
    engines = [("shared", engine)]
    if engine.backend == "transformers":
        engines.append(("not_shared", build_engine(model, share_prefill=False, prefix_cache_mb=0)))
    for label, eng in engines:
        t = time.perf_counter()
        res = eng.generate([req])[0]
        out[label] = dict(prompt_tokens=res.prompt_tokens, computed=res.prompt_tokens_computed,
                          cached=res.prompt_tokens_cached,
                          seconds=round(time.perf_counter() - t, 2))
    return out


def prefix_reuse(engine, children: int = 3, steps: int = 3) -> dict:
    """MCTS-like rounds: each round's prompts continue the previous round's samples.

    Round 0 samples ``children`` Reason steps from a question; every later round extends each
    sample by a "Step k:" header and samples one more step. Counts prompt tokens computed.
    """
    from meds3.engines import GenerationRequest, SamplingParams

    frontier = [engine.encode(prompts(engine, 1, "Search")[0] + "Step 1:")]
    total_prompt = total_computed = 0
    t = time.perf_counter()
    for k in range(steps):
        reqs = [GenerationRequest(prompt_token_ids=ids, n=children if k == 0 else 1,
                                  params=SamplingParams(temperature=0.7, top_p=0.9, seed=k,
                                                        max_new_tokens=48, stop=[f"Step {k + 2}:"]))
                for ids in frontier]
        results = engine.generate(reqs)
        frontier = []
        for r in results:
            total_prompt += r.prompt_tokens * len(r.samples)
            total_computed += r.prompt_tokens_computed
            for s in r.samples:
                frontier.append(r.prompt_token_ids + s.token_ids + engine.encode(
                    f"\n\nStep {k + 2}:" if s.finish_reason != "stop" else ""))
    return dict(prompt_tokens=total_prompt, computed=total_computed,
                seconds=round(time.perf_counter() - t, 2))


def clear_caches(engine) -> None:
    """Forget cached prefixes so a measurement sees only its own reuse."""
    if hasattr(engine, "prefix_store"):
        engine.prefix_store.clear()
    elif hasattr(engine, "llm"):
        engine.llm.reset_prefix_cache()


def run_backend(backend: str, args) -> dict:
    """All measurements for one backend."""
    from meds3.engines import build_engine, resolve_model

    path = str(resolve_model(args.model))
    params_count = count_params(path)
    opts = {} if backend == "transformers" else dict(max_model_len=2048)
    t = time.perf_counter()
    engine = build_engine(path, backend=backend, **opts)
    startup = time.perf_counter() - t
    out = dict(backend=backend, model=args.model, parameters=params_count[0],
               startup_s=round(startup, 1), throughput=[])
    throughput(engine, 2, 8, params_count)  # warm-up
    for batch in args.batch_sizes:
        # best of --repeats (fresh prompts each time): other load on a shared machine only
        # ever slows a run down
        row = max((throughput(engine, batch, args.new_tokens, params_count, f" r{r}")
                   for r in range(args.repeats)), key=lambda x: x["tokens_per_s"])
        logging.info("%s %s", backend, row)
        out["throughput"].append(row)
    clear_caches(engine)
    out["n_sharing"] = n_sharing(path, engine)
    clear_caches(engine)
    if backend == "transformers":
        out["generate_baseline"] = generate_baseline(engine, max(args.batch_sizes),
                                                     args.new_tokens)
        logging.info("model.generate baseline %s", out["generate_baseline"])
        out["prefix_reuse"] = {
            "prefix_cache_on": prefix_reuse(engine),
            "prefix_cache_off": prefix_reuse(build_engine(path, prefix_cache_mb=0)),
        }
    else:
        out["prefix_reuse"] = {"prefix_cache_on": prefix_reuse(engine)}
    engine.close()
    return out


def markdown(report: dict) -> str:
    """The figures as markdown tables."""
    lines = [f"float32 matmul (2048^3) GFLOP/s measured before each backend and at the end: "
             f"{report['matmul_gflops']}; peak used: {report['peak_gflops']:.0f} "
             f"(torch threads: {report['threads']})", ""]
    lines += ["| backend | batch | new tokens | s | tokens/s | model GFLOP/s | % of peak "
              "| % of peak incl. prompt |", "|---|---|---|---|---|---|---|---|"]
    for b in report["backends"]:
        for r in b["throughput"]:
            lines.append(f"| {b['backend']} | {r['batch']} | {r['generated_tokens']} | "
                         f"{r['seconds']} | {r['tokens_per_s']} | {r['model_gflops']} | "
                         f"{100 * r['peak_fraction']:.1f} | "
                         f"{100 * r['peak_fraction_with_prompt']:.1f} |")
    for b in report["backends"]:
        if "generate_baseline" in b:
            g = b["generate_baseline"]
            lines.append(f"| transformers `model.generate` (stock) | {g['batch']} | "
                         f"{g['generated_tokens']} | {g['seconds']} | {g['tokens_per_s']} | | | |")
    lines += ["", "| backend | measurement | prompt tokens needed | computed | s |",
              "|---|---|---|---|---|"]
    for b in report["backends"]:
        ns = b["n_sharing"]
        for label in ("shared", "not_shared"):
            if label in ns:
                x = ns[label]
                lines.append(f"| {b['backend']} | n={ns['n']} samples, {label} | "
                             f"{ns['n'] * x['prompt_tokens']} | {x['computed']} | {x['seconds']} |")
        for label, x in b["prefix_reuse"].items():
            lines.append(f"| {b['backend']} | MCTS-like rounds, {label} | {x['prompt_tokens']} | "
                         f"{x['computed']} | {x['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--backends", nargs="+", default=["transformers", "vllm"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 32, 64])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2, help="keep the best of this many runs")
    parser.add_argument("--json", help="write the report here as JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    # The peak is measured before each backend and at the end; fractions use the best, so
    # a measurement disturbed by other load on the machine reads low, never high.
    report = dict(threads=torch.get_num_threads(), new_tokens=args.new_tokens,
                  matmul_gflops=[], backends=[])
    for backend in args.backends:
        report["matmul_gflops"].append(round(matmul_gflops(), 1))
        try:
            report["backends"].append(run_backend(backend, args))
        except ImportError as exc:
            logging.warning("skipping %s: %s", backend, exc)
    report["matmul_gflops"].append(round(matmul_gflops(), 1))
    peak = report["peak_gflops"] = max(report["matmul_gflops"])
    for b in report["backends"]:
        for row in b["throughput"]:
            row["peak_fraction"] = round(row["model_gflops"] / peak, 3)
            row["peak_fraction_with_prompt"] = round(row["model_gflops_with_prompt"] / peak, 3)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    print(markdown(report))
    return 0


if __name__ == "__main__":  # vLLM starts worker processes: keep the guard
    sys.exit(main())
