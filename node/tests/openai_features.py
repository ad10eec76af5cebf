"""The official OpenAI Python client and the generation features, against a node serving the
default chat model (argument: the node's base URL): structured output parsed into a Pydantic
model, a required tool call, log probabilities, several choices, streamed tool calls."""
import json
import sys

from openai import BadRequestError, OpenAI
from pydantic import BaseModel

MODEL = "smollm2-135m-instruct"
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)


class City(BaseModel):
    name: str
    country: str
    population_millions: float


# Structured output: the SDK sends a strict json_schema made from the Pydantic model and
# parses the answer back into it (it raises when the JSON does not validate).
parsed = client.chat.completions.parse(
    model=MODEL,
    messages=[{"role": "user", "content": "Describe Paris as JSON."}],
    response_format=City,
    max_tokens=80,
    temperature=0,
)
city = parsed.choices[0].message.parsed
assert isinstance(city, City), parsed
assert parsed.choices[0].finish_reason == "stop", parsed

plain_json = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Give me a JSON object about cats."}],
    response_format={"type": "json_object"},
    max_tokens=80,
    temperature=0,
)
assert isinstance(json.loads(plain_json.choices[0].message.content), dict)

try:
    client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        response_format={"type": "json_schema", "json_schema": {"name": "bad", "schema": {"$ref": "#/definitions/nowhere"}}},
        max_tokens=8,
    )
    raise AssertionError("a schema that cannot be enforced must fail")
except BadRequestError as e:
    assert e.status_code == 400 and "response_format" in str(e), e

# Tools: with tool_choice="required" the call is enforced and comes back as tool_calls.
tools = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The current weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"],
                "additionalProperties": False,
            },
        },
    }
]
messages = [{"role": "user", "content": "What is the weather in Paris?"}]
called = client.chat.completions.create(
    model=MODEL, messages=messages, tools=tools, tool_choice="required", max_tokens=64, temperature=0
)
choice = called.choices[0]
assert choice.finish_reason == "tool_calls", called
call = choice.message.tool_calls[0]
assert call.type == "function" and call.function.name == "get_weather" and call.id, call
args = json.loads(call.function.arguments)
assert isinstance(args["city"], str) and args["unit"] in ("celsius", "fahrenheit"), args

# The call and its result go back into the history and render through the template.
messages += [
    {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
    {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature": 21})},
]
follow_up = client.chat.completions.create(model=MODEL, messages=messages, tools=tools, max_tokens=24, temperature=0)
assert follow_up.choices[0].finish_reason in ("stop", "length", "tool_calls"), follow_up

# Streamed, the call arrives as tool-call deltas the SDK can put back together.
stream = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Weather in Rome?"}],
    tools=tools,
    tool_choice={"type": "function", "function": {"name": "get_weather"}},
    max_tokens=64,
    temperature=0,
    stream=True,
)
names, arguments, reasons = [], "", []
for chunk in stream:
    for c in chunk.choices:
        for d in c.delta.tool_calls or []:
            if d.function.name:
                names.append(d.function.name)
            arguments += d.function.arguments or ""
        if c.finish_reason:
            reasons.append(c.finish_reason)
assert names == ["get_weather"] and reasons == ["tool_calls"], (names, reasons)
assert json.loads(arguments)["unit"] in ("celsius", "fahrenheit"), arguments

# Log probabilities, not streamed and streamed.
lp = client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Say hello."}],
    logprobs=True,
    top_logprobs=3,
    max_tokens=8,
    temperature=0,
)
content = lp.choices[0].logprobs.content
assert len(content) == lp.usage.completion_tokens, (len(content), lp.usage)
assert "".join(t.token for t in content) == lp.choices[0].message.content
for t in content:
    assert len(t.top_logprobs) == 3 and t.logprob <= 0
    assert t.top_logprobs[0].token == t.token  # greedy takes the most likely
streamed_tokens = []
for chunk in client.chat.completions.create(
    model=MODEL,
    messages=[{"role": "user", "content": "Say hello."}],
    logprobs=True,
    top_logprobs=2,
    max_tokens=8,
    temperature=0,
    stream=True,
):
    for c in chunk.choices:
        if c.logprobs and c.logprobs.content:
            streamed_tokens += [t.token for t in c.logprobs.content]
assert streamed_tokens == [t.token for t in content], (streamed_tokens, content)

completion = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=4, logprobs=2, temperature=0)
assert len(completion.choices[0].logprobs.tokens) == completion.usage.completion_tokens

# Several choices from one prompt.
three = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Name a colour."}], n=3, max_tokens=8, temperature=0.9, seed=3
)
assert [c.index for c in three.choices] == [0, 1, 2], three
assert all(c.message.content for c in three.choices)

print("openai features: ok")
