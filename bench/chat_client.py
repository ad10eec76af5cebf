"""Load generator of bench/chat.sh: one scenario against one OpenAI-compatible server.

    python chat_client.py SCENARIO --url http://127.0.0.1:PORT --round R [options]

Scenarios (each prints one JSON line on stdout):
  decode      one streamed request, ignore_eos, --tokens long; tok/s between first and last token
  concurrent  --streams streamed requests at once, --tokens each; aggregate tok/s (all tokens over
              the wall time from the first send to the last token)
  ttft        --samples requests of a --prompt-tokens prompt, max_tokens 1, each prompt distinct
              from its first token (nothing cached); median time to first token
  multiturn   --conversations concurrent conversations of --turns turns (one request in flight
              per conversation, conversation c starting c x --stagger-ms late): a shared
              ~200-token system prompt, ~--user-tokens of user text and --gen generated tokens
              (ignore_eos) a turn, each turn sending the whole history with the previous
              answers; mean and p99 TTFT over all turns, and over turns 2..N
  warmup      one short request (connection, model pages, the shared system prompt)

Time to first token: from sending the request to the first SSE chunk whose delta carries
content. Tokens: usage.completion_tokens of the final chunk (stream_options.include_usage).
"""
import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time

import httpx

WORDS = (
    "time year people way day man thing woman life child world school state family student "
    "group country problem hand part place case week company system program question work "
    "government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father "
    "power hour game line end member law car city community name president team minute idea "
    "kid body information back parent face others level office door health person art war "
    "history party result change morning reason research girl guy moment air teacher force "
    "education foot boy age policy music market sense nation plan college interest death "
    "experience effect use class control care field development role effort rate heart drug "
    "show leader light voice wife police mind price report decision son view relationship town "
    "road arm difference value building action model season society tax director position "
    "player record paper space ground form event official matter center couple site project "
    "activity star table need court oil situation cost industry figure street image phone data "
    "picture practice piece land product doctor wall patient worker news test movie north love "
    "support technology step baby computer type attention film tree source organization hair "
    "window evidence population truth quality river garden bridge train music winter summer"
).split()

# ~200 tokens, shared by every conversation of every round.
SYSTEM = (
    "You are a careful and friendly assistant working for a small public library. You answer "
    "questions from visitors about books, opening hours, events, the reading rooms, the "
    "computers, printing, borrowing rules and the history of the town. Keep every answer short, "
    "polite and concrete. When you do not know something, say so plainly and suggest asking the "
    "staff at the front desk. Never invent opening hours, prices or phone numbers. If a visitor "
    "asks for a recommendation, give two or three titles with one sentence about each, and ask "
    "what they liked recently. If a question is about children, mention the children's corner on "
    "the first floor, which is open every afternoon. Events are listed on the board near the "
    "entrance and change every week. Visitors may bring their own laptops; the network name is "
    "written on the card at each table. Quiet rooms can be booked for two hours at a time. Do "
    "not discuss politics or give medical or legal advice; point to a professional instead."
)


def text(rng, n_tokens):
    """About n_tokens tokens of sentences (a common word or a full stop is about one token)."""
    out, n = [], 0
    while n < n_tokens:
        k = rng.randint(6, 12)
        words = [rng.choice(WORDS) for _ in range(k)]
        out.append(" ".join(words).capitalize() + ".")
        n += k + 1
    return " ".join(out)


async def chat(client, url, messages, max_tokens, ignore_eos=True):
    """One streamed chat completion; returns its timings, usage and generated text."""
    body = {
        "model": "smollm2-135m-instruct",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": ignore_eos,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    first = last = None
    parts, usage, timings, chunks = [], None, None, 0
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"HTTP {resp.status_code}: {(await resp.aread())[:300]!r}")
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            msg = json.loads(data)
            for choice in msg.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
                    parts.append(content)
            usage = msg.get("usage") or usage
            timings = msg.get("timings") or timings  # llama-server's own
    if first is None:
        raise RuntimeError("no content in the stream")
    usage = usage or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    if cached is None and timings:
        cached = timings.get("cache_n")
    return {
        "t0": t0, "first": first, "last": last, "ttft": first - t0, "chunks": chunks,
        "completion_tokens": usage.get("completion_tokens", chunks),
        "prompt_tokens": usage.get("prompt_tokens"), "cached_tokens": cached,
        "server_prompt_ms": timings.get("prompt_ms") if timings else None,
        "text": "".join(parts),
    }


SHORT_SYSTEM = "You are a helpful assistant."


def user(content, system=SHORT_SYSTEM):
    return [{"role": "system", "content": system}, {"role": "user", "content": content}]


def pct(values, q):
    """Linear-interpolated percentile (q in 0..100)."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


async def decode(client, a, rng):
    r = await chat(client, a.url, user(f"({a.round}) Write a long story about a {rng.choice(WORDS)}."),
                   a.tokens)
    n = r["completion_tokens"]
    return {"tok_s": (n - 1) / (r["last"] - r["first"]), "completion_tokens": n,
            "chunks": r["chunks"], "ttft_ms": r["ttft"] * 1e3}


async def concurrent(client, a, rng):
    prompts = [f"({a.round}.{i}) Write a long story about a {rng.choice(WORDS)} and a "
               f"{rng.choice(WORDS)}." for i in range(a.streams)]
    t0 = time.perf_counter()
    rs = await asyncio.gather(*(chat(client, a.url, user(p), a.tokens) for p in prompts))
    total = sum(r["completion_tokens"] for r in rs)
    wall = max(r["last"] for r in rs) - t0
    per = [(r["completion_tokens"] - 1) / (r["last"] - r["first"]) for r in rs]
    return {"tok_s": total / wall, "completion_tokens": total, "wall_s": wall,
            "per_stream_tok_s": statistics.mean(per),
            "ttft_ms_max": max(r["ttft"] for r in rs) * 1e3}


async def ttft(client, a, rng):
    out = []
    for i in range(a.samples):
        # A distinct first sentence: no server can reuse a cached prefix.
        system = f"Request {a.round}-{i}-{rng.randrange(10**9)}. You are a helpful assistant."
        prompt = "Summarize the following notes in one word. " + text(rng, a.prompt_tokens - 40)
        out.append(await chat(client, a.url, user(prompt, system), 1))
    server = [r["server_prompt_ms"] for r in out if r["server_prompt_ms"] is not None]
    return {"ttft_ms": statistics.median(r["ttft"] for r in out) * 1e3,
            "prompt_tokens": out[0]["prompt_tokens"],
            "cached_tokens": max(r["cached_tokens"] or 0 for r in out),
            "server_prompt_ms": statistics.median(server) if server else None}


async def conversation(client, a, c):
    rng = random.Random(f"{a.seed}-{a.round}-{c}")
    # Staggered starts: conversations that all start at once stay in lock-step, every turn's
    # prefill colliding with all the others'.
    await asyncio.sleep(c * a.stagger_ms / 1000)
    messages = [{"role": "system", "content": SYSTEM}]
    turns = []
    for t in range(a.turns):
        messages.append({"role": "user",
                         "content": f"Visitor {a.round}.{c}, question {t + 1}: " + text(rng, a.user_tokens)})
        r = await chat(client, a.url, messages, a.gen)
        messages.append({"role": "assistant", "content": r["text"]})
        turns.append({k: r[k] for k in ("ttft", "prompt_tokens", "cached_tokens", "completion_tokens",
                                         "server_prompt_ms")})
    return turns


async def multiturn(client, a, rng):
    convs = await asyncio.gather(*(conversation(client, a, c) for c in range(a.conversations)))
    all_turns = [t for conv in convs for t in conv]
    ttfts = [t["ttft"] * 1e3 for t in all_turns]
    prompt = sum(t["prompt_tokens"] or 0 for t in all_turns)
    cached = sum(t["cached_tokens"] or 0 for t in all_turns)
    by_turn = [statistics.mean(conv[t]["ttft"] * 1e3 for conv in convs) for t in range(a.turns)]
    # Turns 2..N: the first turn of every conversation arrives at once and cold (only one slot
    # holds the shared system prompt), which sets the p99 of all turns.
    warm = [t["ttft"] * 1e3 for conv in convs for t in conv[1:]] or ttfts
    return {"mean_ms": statistics.mean(ttfts), "p99_ms": pct(ttfts, 99), "p50_ms": pct(ttfts, 50),
            "warm_mean_ms": statistics.mean(warm), "warm_p99_ms": pct(warm, 99),
            "by_turn_ms": [round(x, 1) for x in by_turn],
            "last_prompt_tokens": max(conv[-1]["prompt_tokens"] or 0 for conv in convs),
            "server_prompt_ms": statistics.mean(t["server_prompt_ms"] for t in all_turns)
            if all(t["server_prompt_ms"] is not None for t in all_turns) else None,
            "cached_share": cached / prompt if prompt else None,
            "completion_tokens": sum(t["completion_tokens"] for t in all_turns)}


async def warmup(client, a, rng):
    r = await chat(client, a.url, user("Say hello.", SYSTEM), 8)
    return {"ttft_ms": r["ttft"] * 1e3, "prompt_tokens": r["prompt_tokens"]}


COUNTERS = ("golek_gen_time_to_first_token_seconds", "golek_provider_queue_wait_seconds")


async def counters(client, url):
    """Golek's own TTFT (admission to first token) and queue-wait sums and counts, from
    /metrics; None where the server has none (llama-server without --metrics)."""
    try:
        r = await client.get(f"{url}/metrics")
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    out = {}
    for line in r.text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name.rsplit("_", 1)[0] in COUNTERS and 'smollm2-135m-instruct' in line:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out or None


def server_side(before, after):
    """Mean server-side TTFT and queue wait (ms) of the requests between two scrapes."""
    if not before or not after:
        return {}
    res = {}
    for metric, key in zip(COUNTERS, ("golek_ttft_ms", "golek_queue_ms")):
        n = after.get(f"{metric}_count", 0) - before.get(f"{metric}_count", 0)
        if n > 0:
            res[key] = (after.get(f"{metric}_sum", 0) - before.get(f"{metric}_sum", 0)) / n * 1e3
    return res


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("scenario", choices=["decode", "concurrent", "ttft", "multiturn", "warmup"])
    p.add_argument("--url", required=True)
    p.add_argument("--label", default="")
    p.add_argument("--round", type=int, default=0)
    p.add_argument("--seed", default="golek")
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--streams", type=int, default=8)
    p.add_argument("--samples", type=int, default=3)
    p.add_argument("--prompt-tokens", type=int, default=1000)
    p.add_argument("--conversations", type=int, default=8)
    p.add_argument("--turns", type=int, default=10)
    p.add_argument("--user-tokens", type=int, default=40)
    p.add_argument("--gen", type=int, default=32)
    p.add_argument("--stagger-ms", type=int, default=500)
    a = p.parse_args()
    rng = random.Random(f"{a.seed}-{a.scenario}-{a.round}")
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits) as client:
        before = await counters(client, a.url)
        result = await globals()[a.scenario](client, a, rng)
        result.update(server_side(before, await counters(client, a.url)))
    load = os.getloadavg()[0]  # the 1-minute load: other work on the machine shows here
    print(json.dumps({"scenario": a.scenario, "label": a.label, "round": a.round, **result,
                      "load1": round(load, 2)}))
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
