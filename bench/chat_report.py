"""The markdown report of bench/chat.sh, from its measurements (chat.jsonl).

    python chat_report.py RESULTS.jsonl PROPS.json SLOTS.json key=value...

Best of the rounds for each figure: the highest rate, the lowest time. Multi-turn: the round
with the lowest mean TTFT gives the details; its p99 is the lowest p99 of any round.
"""
import json
import sys

results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
props = json.load(open(sys.argv[2]))
try:
    slots = json.load(open(sys.argv[3]))
except ValueError:
    slots = []
cfg = dict(arg.split("=", 1) for arg in sys.argv[4:])

LLAMA, GOLEK, NOCACHE = "llama-server", "golek", "golek-nocache"


def runs(scenario, label):
    return [r for r in results if r["scenario"] == scenario and r["label"] == label]


def best(scenario, label, key, higher=True):
    values = [r[key] for r in runs(scenario, label) if r.get(key) is not None]
    if not values:
        return None
    return max(values) if higher else min(values)


def best_run(scenario, label, key):
    rs = [r for r in runs(scenario, label) if r.get(key) is not None]
    return min(rs, key=lambda r: r[key]) if rs else {}


def num(x, digits=1):
    return "n/a" if x is None else f"{x:,.{digits}f}"


def ratio(golek, llama, higher):
    """Golek's speed relative to llama-server's (>1: Golek faster)."""
    if not golek or not llama:
        return None
    return golek / llama if higher else llama / golek


def times(x):
    return "n/a" if x is None else f"{x:.2f}x"


def met(r, target):
    return "n/a" if r is None else ("yes" if r >= target else f"**no** ({(1 - r / target) * 100:.0f}% short)")


dgs = props.get("default_generation_settings") or {}
slot_ctx = sorted({s.get("n_ctx") for s in slots if isinstance(s, dict)}) if isinstance(slots, list) else []
n_ctx, n_slots = int(cfg["n_ctx"]), int(cfg["slots"])
pin = "servers on cores 0..threads-1, the client on the last core" if cfg.get("pin") == "1" \
    and int(cfg["threads"]) < int(cfg["cores"]) else "no pinning"
out = []
w = out.append
w("# Chat: Golek (gguf provider) vs llama.cpp's llama-server\n")
w(f"- Model: `{cfg.get('model')}` (SmolLM2-135M-Instruct), temperature 0, `ignore_eos` where a "
  "length is forced.")
w(f"- Both servers: {cfg['threads']} compute thread(s) (`threads`; llama-server `-t`/`-tb`), "
  f"{n_slots} slots, n_ctx {n_ctx} = {n_ctx // n_slots} tokens per slot (split KV cache, not "
  f"unified), batch/ubatch {cfg['batch']}; {cfg['cores']} cores, {pin}.")
w(f"- llama-server: the llama.cpp of {cfg.get('llama_llama')} (`{cfg.get('llama_version')}`); "
  f"it reports total_slots {props.get('total_slots', 'n/a')}, per-slot n_ctx "
  f"{dgs.get('n_ctx', 'n/a')} (/props), {slot_ctx or 'n/a'} (/slots); prompt cache at its "
  "defaults (cache_prompt on, host-memory cache --cache-ram on).")
w(f"- Golek: `{cfg.get('golek_version', 'n/a')}` at `{cfg.get('git')}`, the llama.cpp of "
  f"{cfg.get('golek_llama')}; prompt cache on (its default) except the \"no cache\" column (a "
  f"third server, `prompt_cache=false`, measured in the first {cfg.get('nocache_rounds')} round(s)).")
loads = [r["load1"] for r in results if "load1" in r]
if loads:
    w(f"- 1-minute load average at the end of each measurement: {min(loads):.1f} to "
      f"{max(loads):.1f} (mean {sum(loads) / len(loads):.1f}); the benchmark alone keeps it near "
      f"{int(cfg['threads']) + 1}: above that, other work shared the cores.")
w(f"- CPU used by the idle servers over 3 s after the warm-up (llama-server, Golek, Golek no "
  f"cache): {cfg.get('idle_cpu', 'n/a').strip()}.")
w(f"- Best of {cfg['rounds']} interleaved rounds (llama-server, Golek, llama-server, Golek, ...; "
  "all servers up throughout, idle while another is measured).\n")

dec = (best("decode", LLAMA, "tok_s"), best("decode", GOLEK, "tok_s"), True)
con = (best("concurrent", LLAMA, "tok_s"), best("concurrent", GOLEK, "tok_s"), True)
ttft = (best("ttft", LLAMA, "ttft_ms", False), best("ttft", GOLEK, "ttft_ms", False), False)
mt_mean = (best("multiturn", LLAMA, "mean_ms", False), best("multiturn", GOLEK, "mean_ms", False), False)
mt_p99 = (best("multiturn", LLAMA, "p99_ms", False), best("multiturn", GOLEK, "p99_ms", False), False)
mt_warm = (best("multiturn", LLAMA, "warm_p99_ms", False), best("multiturn", GOLEK, "warm_p99_ms", False), False)
tp = [best_run("ttft", lab, "ttft_ms").get("prompt_tokens") for lab in (LLAMA, GOLEK)]
rows = [
    (f"Single-stream decode, {cfg['decode_tokens']} tokens (tok/s)", dec),
    (f"{cfg['streams']} concurrent streams x {cfg['stream_tokens']} tokens, aggregate (tok/s)", con),
    (f"TTFT, {tp[0] or '?'}/{tp[1] or '?'}-token prompt, max_tokens 1 (ms)", ttft),
    (f"Multi-turn TTFT, mean ({cfg['conversations']} conversations x {cfg['turns']} turns, ms)", mt_mean),
    ("Multi-turn TTFT, p99 (ms)", mt_p99),
    ("Multi-turn TTFT, p99 of turns 2..N (ms)", mt_warm),
]
w("| Figure | llama-server | Golek | Golek vs llama-server | Target >= 0.95 |")
w("|---|---:|---:|---:|---|")
for name, (llama, golek, higher) in rows:
    r = ratio(golek, llama, higher)
    w(f"| {name} | {num(llama)} | {num(golek)} | {num(r, 2)} | {met(r, 0.95)} |")
w("\n\"Golek vs llama-server\" is a speed ratio: Golek's rate over llama-server's, or "
  "llama-server's time over Golek's (above 1: Golek is faster).\n")

w(f"## Multi-turn detail (each turn ~{cfg['user_tokens']} user tokens + {cfg['gen_tokens']} "
  "generated, the whole history sent, one request in flight per conversation, conversation c "
  f"starting c x {cfg.get('stagger_ms')} ms late)\n")
labels = [(LLAMA, "llama-server (cache)"), (GOLEK, "Golek (cache)"), (NOCACHE, "Golek (no cache)")]
detail = {lab: best_run("multiturn", lab, "mean_ms") for lab, _ in labels}
w("| | " + " | ".join(name for _, name in labels) + " |")
w("|---|" + "---:|" * len(labels))
w("| TTFT mean (ms) | " + " | ".join(num(best("multiturn", lab, "mean_ms", False)) for lab, _ in labels) + " |")
w("| TTFT p50 (ms) | " + " | ".join(num(detail[lab].get("p50_ms")) for lab, _ in labels) + " |")
w("| TTFT p99 (ms) | " + " | ".join(num(best("multiturn", lab, "p99_ms", False)) for lab, _ in labels) + " |")
w("| TTFT mean, turns 2..N (ms) | " + " | ".join(num(best("multiturn", lab, "warm_mean_ms", False)) for lab, _ in labels) + " |")
w("| TTFT p99, turns 2..N (ms) | " + " | ".join(num(best("multiturn", lab, "warm_p99_ms", False)) for lab, _ in labels) + " |")
w("| prompt tokens served from cache | " + " | ".join(
    "n/a" if detail[lab].get("cached_share") is None else f"{detail[lab]['cached_share'] * 100:.0f}%"
    for lab, _ in labels) + " |")
w("| longest prompt (tokens) | " + " | ".join(str(detail[lab].get("last_prompt_tokens", "n/a")) for lab, _ in labels) + " |")
w("| mean TTFT by turn, 1..N (ms) | " + " | ".join(
    " ".join(f"{x:.0f}" for x in detail[lab].get("by_turn_ms", [])) for lab, _ in labels) + " |")
off_mean, off_p99 = best("multiturn", NOCACHE, "mean_ms", False), best("multiturn", NOCACHE, "p99_ms", False)
gain_mean = off_mean / mt_mean[1] if off_mean and mt_mean[1] else None
gain_p99 = off_p99 / mt_p99[1] if off_p99 and mt_p99[1] else None
def gain(key):
    off, on = best("multiturn", NOCACHE, key, False), best("multiturn", GOLEK, key, False)
    return off / on if off and on else None


w(f"\nGolek's prompt cache, TTFT without it over TTFT with it (target >= 3x): mean "
  f"{times(gain_mean)} ({met(gain_mean, 3.0)}), p99 {times(gain_p99)} ({met(gain_p99, 3.0)}); "
  f"turns 2..N: mean {times(gain('warm_mean_ms'))} ({met(gain('warm_mean_ms'), 3.0)}), p99 "
  f"{times(gain('warm_p99_ms'))} ({met(gain('warm_p99_ms'), 3.0)}). The p99 of all turns is "
  "the first turn: every conversation starts at once, cold but for the one slot that holds the "
  "shared system prompt, with or without a cache.\n")

w("## Diagnostics\n")
for lab, name in labels[:2]:
    d, c, t = best_run("decode", lab, "ttft_ms"), runs("concurrent", lab), best_run("ttft", lab, "ttft_ms")
    per = max((r["per_stream_tok_s"] for r in c), default=None)
    srv = t.get("server_prompt_ms")
    line = (f"- {name}: decode request TTFT {num(d.get('ttft_ms'))} ms, {d.get('chunks', 'n/a')} "
            f"SSE content chunks for {d.get('completion_tokens', 'n/a')} tokens; concurrent: best "
            f"per-stream rate {num(per)} tok/s; long-prompt TTFT {num(t.get('ttft_ms'))} ms for "
            f"{t.get('prompt_tokens', 'n/a')} prompt tokens ({num(t.get('prompt_tokens', 0) / t['ttft_ms'] * 1e3 if t.get('ttft_ms') else None, 0)} "
            "tok/s end to end)")
    if srv is not None:
        line += f", of which {num(srv)} ms prompt processing by the server's own timings"
    w(line + ".")
def split(label, scenario, pick_key):
    """Client TTFT against the server's own account of it, from the run that gave the figure."""
    r = best_run(scenario, label, pick_key)
    own = r.get("server_prompt_ms") if label == LLAMA else r.get("golek_ttft_ms")
    if own is None:
        return "n/a"
    text = f"{num(own)} ms"
    if label != LLAMA and r.get("golek_queue_ms") is not None:
        text += f" + {num(r['golek_queue_ms'])} ms queued"
    return text


w("\nWhere TTFT goes: the client's mean TTFT against the server's own account of it, in the "
  "round that gave each figure (llama-server: its `timings.prompt_ms`, prompt processing only; "
  "Golek: its `golek_gen_time_to_first_token_seconds`, admission to first token, plus "
  "`golek_provider_queue_wait_seconds`, from /metrics). The rest is HTTP, templating, "
  "tokenizing, waiting for a slot's turn in the batch loop and the first SSE chunk.\n")
w("| Scenario | llama-server: client / own | Golek: client / own |")
w("|---|---|---|")
for scenario, key, name in [("ttft", "ttft_ms", "long prompt"), ("multiturn", "mean_ms", "multi-turn, all turns")]:
    cells = []
    for lab in (LLAMA, GOLEK):
        r = best_run(scenario, lab, key)
        cells.append(f"{num(r.get(key))} ms / {split(lab, scenario, key)}")
    w(f"| {name} | " + " | ".join(cells) + " |")
w("\n## Every round\n")
figures = [("decode", "tok_s", "decode tok/s"), ("concurrent", "tok_s", "concurrent tok/s"),
           ("ttft", "ttft_ms", "long-prompt TTFT ms"), ("multiturn", "mean_ms", "multi-turn mean TTFT ms"),
           ("multiturn", "p99_ms", "multi-turn p99 TTFT ms")]
w("| Figure | Server | " + " | ".join(f"round {i}" for i in range(1, int(cfg["rounds"]) + 1)) + " |")
w("|---|---|" + "---:|" * int(cfg["rounds"]))
figures.append(("", "load1", "1-minute load after multi-turn"))
for scenario, key, name in figures:
    for lab, label in labels:
        rs = runs(scenario, lab) if scenario else [r for r in runs("multiturn", lab)]
        if rs:
            cells = {r["round"]: num(r.get(key)) for r in rs}
            w(f"| {name} | {label} | " + " | ".join(
                cells.get(i, "-") for i in range(1, int(cfg["rounds"]) + 1)) + " |")
print("\n".join(out))
