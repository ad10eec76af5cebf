"""The official OpenAI Python client against a running node (argument: the node's base URL)."""
import sys

from openai import BadRequestError, NotFoundError, OpenAI

MODEL = "all-minilm-l6-v2"
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)


def cos(a, b):
    return sum(x * y for x, y in zip(a, b))


# The client asks for base64 by default and decodes it itself.
r = client.embeddings.create(
    model=MODEL,
    input=["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply."],
)
vs = [d.embedding for d in r.data]
assert len(vs) == 3 and all(len(v) == 384 for v in vs), [len(v) for v in vs]
assert cos(vs[0], vs[1]) > cos(vs[0], vs[2]) + 0.4, (cos(vs[0], vs[1]), cos(vs[0], vs[2]))
assert r.usage.prompt_tokens > 0 and r.model == MODEL

floats = client.embeddings.create(model=MODEL, input="A man is eating food.", encoding_format="float")
assert max(abs(a - b) for a, b in zip(floats.data[0].embedding, vs[0])) < 1e-5

ids = [m.id for m in client.models.list()]
assert MODEL in ids, ids
assert client.models.retrieve(MODEL).id == MODEL

try:
    client.embeddings.create(model="no-such-model", input="x")
    raise AssertionError("an unknown model must fail")
except NotFoundError as e:
    assert e.status_code == 404

try:
    client.embeddings.create(model=MODEL, input=[])
    raise AssertionError("an empty input must fail")
except BadRequestError as e:
    assert e.status_code == 400 and "input" in str(e)

# Chat with golek-tiny, streamed token by token and not.
chat = client.chat.completions.create(
    model="golek-tiny", messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0
)
assert chat.choices[0].finish_reason in ("stop", "length")
assert chat.usage.completion_tokens <= 8 and chat.usage.prompt_tokens > 0
pieces = []
usage = None
for chunk in client.chat.completions.create(
    model="golek-tiny",
    messages=[{"role": "user", "content": "hello"}],
    max_tokens=8,
    temperature=0,
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
assert "".join(pieces) == chat.choices[0].message.content, (pieces, chat.choices[0].message.content)
assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens
completion = client.completions.create(model="golek-tiny", prompt="once upon a time", max_tokens=4, temperature=0)
assert completion.choices[0].finish_reason in ("stop", "length")
try:
    client.chat.completions.create(model="golek-tiny", messages=[{"role": "user", "content": "x"}], temperature=-1)
    raise AssertionError("a negative temperature must fail")
except BadRequestError as e:
    assert e.status_code == 400

print("openai client: ok")
