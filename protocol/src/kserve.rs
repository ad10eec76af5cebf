//! KServe v2 (Triton) JSON tensors: the inference request and response bodies, and their
//! conversion to and from Golek's tensors. Shared by the node's `/v2` API and the `triton`
//! provider that calls a remote KServe v2 server.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::half;
use crate::inference::{NamedTensor, TensorData};
use crate::ErrorInfo;

/// Parameters of a request, tensor or output (`binary_data_size`, `binary_data`, ...).
pub type Parameters = Map<String, Value>;

/// One tensor in JSON form. With the binary tensor data extension its elements are not in
/// `data` but in the bytes after the JSON header, `parameters.binary_data_size` of them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// Flat or nested (row-major) elements; absent when the data is binary.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Parameters,
}

/// A requested output (`parameters.binary_data: true` asks for it in binary).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Parameters,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `binary_data_output: true` asks for every output in binary.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub parameters: Parameters,
    pub inputs: Vec<JsonTensor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
}

impl InferBody {
    /// Whether the client wants output `name` in binary: its own `binary_data` parameter when
    /// it names the output, else the request's `binary_data_output`.
    pub fn wants_binary(&self, name: &str) -> bool {
        let requested = self
            .outputs
            .iter()
            .flatten()
            .find(|o| o.name == name)
            .and_then(|o| o.parameters.get("binary_data"))
            .and_then(Value::as_bool);
        requested.unwrap_or_else(|| {
            self.parameters
                .get("binary_data_output")
                .and_then(Value::as_bool)
                .unwrap_or(false)
        })
    }
}

/// The answer to an inference request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferResponse {
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub outputs: Vec<JsonTensor>,
}

/// The header that gives the length of the JSON part of a body with binary tensor data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Splits a body into its JSON header and binary part, given `Inference-Header-Content-Length`.
pub fn split_body<'a>(
    body: &'a [u8],
    header_length: Option<&str>,
) -> Result<(&'a [u8], &'a [u8]), ErrorInfo> {
    let Some(raw) = header_length else {
        return Ok((body, &[]));
    };
    let bad = |message: String| ErrorInfo::invalid("Inference-Header-Content-Length", message);
    let n: usize = raw.trim().parse().map_err(|_| {
        bad(format!(
            "header Inference-Header-Content-Length must be a byte count, got {raw:?}"
        ))
    })?;
    if n > body.len() {
        return Err(bad(format!(
            "header Inference-Header-Content-Length is {n}, but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(n))
}

fn flatten<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        other => out.push(other),
    }
}

fn bad(name: &str, message: String) -> ErrorInfo {
    ErrorInfo::invalid(
        format!("inputs.{name}"),
        format!("input {name:?}: {message}"),
    )
}

/// The byte width of one element of a fixed-size datatype (`None` for BYTES or unknown).
fn width(datatype: &str) -> Option<usize> {
    Some(match datatype {
        "BOOL" | "INT8" | "UINT8" => 1,
        "INT16" | "UINT16" | "FP16" | "BF16" => 2,
        "INT32" | "UINT32" | "FP32" => 4,
        "INT64" | "UINT64" | "FP64" => 8,
        _ => return None,
    })
}

const DATATYPES: &str = "BOOL, INT8..INT64, UINT8..UINT64, FP16, BF16, FP32, FP64, BYTES";

/// Converts one JSON tensor with its data inline (no binary part).
pub fn from_json(input: JsonTensor) -> Result<NamedTensor, ErrorInfo> {
    decode_input(input, &mut &[][..])
}

/// Converts one input tensor, checking datatype, element values and element count. Binary data
/// (`parameters.binary_data_size`) is taken from the front of `binary`.
pub fn decode_input(input: JsonTensor, binary: &mut &[u8]) -> Result<NamedTensor, ErrorInfo> {
    let name = input.name;
    let shape = input
        .shape
        .iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                bad(
                    &name,
                    format!("shape {:?} has a negative dimension", input.shape),
                )
            })
        })
        .collect::<Result<Vec<usize>, _>>()?;
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(&name, format!("shape {shape:?} is too large")))?;
    let dt = input.datatype.as_str();
    if width(dt).is_none() && dt != "BYTES" {
        return Err(bad(
            &name,
            format!("unknown datatype {dt:?} (known: {DATATYPES})"),
        ));
    }
    if let Some(size) = input.parameters.get("binary_data_size") {
        let size = size
            .as_u64()
            .and_then(|s| usize::try_from(s).ok())
            .ok_or_else(|| {
                bad(
                    &name,
                    format!("binary_data_size must be a byte count, got {size}"),
                )
            })?;
        if size > binary.len() {
            return Err(bad(
                &name,
                format!(
                    "binary_data_size is {size}, but only {} bytes of binary data remain",
                    binary.len()
                ),
            ));
        }
        let (bytes, rest) = binary.split_at(size);
        *binary = rest;
        let data = from_raw(dt, expected, bytes).map_err(|m| bad(&name, m))?;
        return Ok(NamedTensor { name, shape, data });
    }
    if input.data.is_null() {
        return Err(bad(
            &name,
            "has neither data nor parameters.binary_data_size".into(),
        ));
    }
    let mut flat = Vec::new();
    flatten(&input.data, &mut flat);
    if flat.len() != expected {
        return Err(bad(
            &name,
            format!(
                "shape {shape:?} needs {expected} elements, got {}",
                flat.len()
            ),
        ));
    }
    fn ints<T: TryFrom<i64> + TryFrom<u64>>(
        flat: &[&Value],
        name: &str,
        dt: &str,
    ) -> Result<Vec<T>, ErrorInfo> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| {
                let as_i = v.as_i64().and_then(|x| T::try_from(x).ok());
                let as_u = || v.as_u64().and_then(|x| T::try_from(x).ok());
                as_i.or_else(as_u)
                    .ok_or_else(|| bad(name, format!("element {i} ({v}) is not a valid {dt}")))
            })
            .collect()
    }
    fn floats(flat: &[&Value], name: &str, dt: &str) -> Result<Vec<f64>, ErrorInfo> {
        flat.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .ok_or_else(|| bad(name, format!("element {i} ({v}) is not a valid {dt}")))
            })
            .collect()
    }
    let f32s = |flat: &[&Value]| -> Result<Vec<f32>, ErrorInfo> {
        Ok(floats(flat, &name, dt)?
            .into_iter()
            .map(|x| x as f32)
            .collect())
    };
    let data = match dt {
        "FP32" => TensorData::F32(f32s(&flat)?),
        "FP64" => TensorData::F64(floats(&flat, &name, dt)?),
        "FP16" => TensorData::F16(f32s(&flat)?.into_iter().map(half::f32_to_f16).collect()),
        "BF16" => TensorData::BF16(f32s(&flat)?.into_iter().map(half::f32_to_bf16).collect()),
        "INT8" => TensorData::I8(ints(&flat, &name, dt)?),
        "INT16" => TensorData::I16(ints(&flat, &name, dt)?),
        "INT32" => TensorData::I32(ints(&flat, &name, dt)?),
        "INT64" => TensorData::I64(ints(&flat, &name, dt)?),
        "UINT8" => TensorData::U8(ints(&flat, &name, dt)?),
        "UINT16" => TensorData::U16(ints(&flat, &name, dt)?),
        "UINT32" => TensorData::U32(ints(&flat, &name, dt)?),
        "UINT64" => TensorData::U64(ints(&flat, &name, dt)?),
        "BOOL" => TensorData::Bool(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_bool()
                        .ok_or_else(|| bad(&name, format!("element {i} ({v}) is not a BOOL")))
                })
                .collect::<Result<_, _>>()?,
        ),
        _ => TensorData::Bytes(
            flat.iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(|s| s.as_bytes().to_vec()).ok_or_else(|| {
                        bad(&name, format!("element {i} ({v}) is not a string (BYTES)"))
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    Ok(NamedTensor { name, shape, data })
}

/// Decodes the binary tensor data extension's raw form: little-endian elements, one byte per
/// BOOL, and for BYTES a 4-byte little-endian length before each element.
pub fn from_raw(datatype: &str, count: usize, bytes: &[u8]) -> Result<TensorData, String> {
    if datatype == "BYTES" {
        let mut rest = bytes;
        let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
        for i in 0..count {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                return Err(format!(
                    "binary BYTES data ends before element {i} of {count}"
                ));
            };
            let len = u32::from_le_bytes(*len) as usize;
            if len > tail.len() {
                return Err(format!(
                    "binary BYTES element {i} says {len} bytes, only {} remain",
                    tail.len()
                ));
            }
            out.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        if !rest.is_empty() {
            return Err(format!(
                "binary BYTES data has {} bytes after its {count} elements",
                rest.len()
            ));
        }
        return Ok(TensorData::Bytes(out));
    }
    let w = width(datatype).ok_or_else(|| format!("unknown datatype {datatype:?}"))?;
    if count.checked_mul(w) != Some(bytes.len()) {
        return Err(format!(
            "{count} elements of {datatype} need {} bytes of binary data, got {}",
            count.saturating_mul(w),
            bytes.len()
        ));
    }
    macro_rules! le {
        ($t:ty, $n:literal) => {
            bytes
                .chunks_exact($n)
                .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk of the element width")))
                .collect()
        };
    }
    Ok(match datatype {
        "BOOL" => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        "INT8" => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
        "UINT8" => TensorData::U8(bytes.to_vec()),
        "INT16" => TensorData::I16(le!(i16, 2)),
        "UINT16" => TensorData::U16(le!(u16, 2)),
        "FP16" => TensorData::F16(le!(u16, 2)),
        "BF16" => TensorData::BF16(le!(u16, 2)),
        "INT32" => TensorData::I32(le!(i32, 4)),
        "UINT32" => TensorData::U32(le!(u32, 4)),
        "FP32" => TensorData::F32(le!(f32, 4)),
        "INT64" => TensorData::I64(le!(i64, 8)),
        "UINT64" => TensorData::U64(le!(u64, 8)),
        _ => TensorData::F64(le!(f64, 8)),
    })
}

/// The raw (binary extension) form of a tensor's elements; see [`from_raw`].
pub fn to_raw(data: &TensorData) -> Vec<u8> {
    fn le<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        v.iter().flat_map(|&x| f(x)).collect()
    }
    match data {
        TensorData::F32(v) => le(v, f32::to_le_bytes),
        TensorData::F64(v) => le(v, f64::to_le_bytes),
        TensorData::I8(v) => le(v, i8::to_le_bytes),
        TensorData::I16(v) => le(v, i16::to_le_bytes),
        TensorData::I32(v) => le(v, i32::to_le_bytes),
        TensorData::I64(v) => le(v, i64::to_le_bytes),
        TensorData::U8(v) => v.clone(),
        TensorData::U16(v) | TensorData::F16(v) | TensorData::BF16(v) => le(v, u16::to_le_bytes),
        TensorData::U32(v) => le(v, u32::to_le_bytes),
        TensorData::U64(v) => le(v, u64::to_le_bytes),
        TensorData::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .flat_map(|b| {
                (b.len() as u32)
                    .to_le_bytes()
                    .into_iter()
                    .chain(b.iter().copied())
            })
            .collect(),
    }
}

/// A tensor in JSON form (flat data). BYTES elements become strings (invalid UTF-8 replaced:
/// ask for binary output to get exact bytes).
pub fn to_json(tensor: &NamedTensor) -> JsonTensor {
    let data = match &tensor.data {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::I16(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::U16(v) => json!(v),
        TensorData::U32(v) => json!(v),
        TensorData::U64(v) => json!(v),
        TensorData::Bool(v) => json!(v),
        TensorData::F16(v) => json!(v.iter().map(|&h| half::f16_to_f32(h)).collect::<Vec<_>>()),
        TensorData::BF16(v) => {
            json!(v.iter().map(|&h| half::bf16_to_f32(h)).collect::<Vec<_>>())
        }
        TensorData::Bytes(v) => json!(v
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()),
    };
    JsonTensor {
        name: tensor.name.clone(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        datatype: tensor.data.datatype().to_string(),
        data,
        parameters: Parameters::new(),
    }
}

/// A tensor in binary form: its JSON description (with `binary_data_size`) and its bytes.
pub fn to_binary(tensor: &NamedTensor) -> (JsonTensor, Vec<u8>) {
    let bytes = to_raw(&tensor.data);
    let mut parameters = Parameters::new();
    parameters.insert("binary_data_size".into(), json!(bytes.len()));
    let described = JsonTensor {
        name: tensor.name.clone(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        datatype: tensor.data.datatype().to_string(),
        data: Value::Null,
        parameters,
    };
    (described, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(datatype: &str, shape: Vec<i64>, data: Value) -> JsonTensor {
        JsonTensor {
            name: "x".into(),
            shape,
            datatype: datatype.into(),
            data,
            parameters: Parameters::new(),
        }
    }

    #[test]
    fn json_tensors_convert_by_datatype_and_shape_and_back() {
        let t = from_json(input("INT64", vec![2, 2], json!([[1, 2], [3, 4]]))).unwrap();
        assert_eq!(t.data, TensorData::I64(vec![1, 2, 3, 4]));
        let back = to_json(&t);
        assert_eq!(
            (back.shape, back.datatype, back.data),
            (vec![2, 2], "INT64".to_string(), json!([1, 2, 3, 4]))
        );
        let t = from_json(input("FP32", vec![3], json!([0.5, 1, -2]))).unwrap();
        assert_eq!(t.data, TensorData::F32(vec![0.5, 1.0, -2.0]));
        let t = from_json(input("BOOL", vec![2], json!([true, false]))).unwrap();
        assert_eq!(t.data, TensorData::Bool(vec![true, false]));
        let t = from_json(input("UINT64", vec![1], json!([u64::MAX]))).unwrap();
        assert_eq!(t.data, TensorData::U64(vec![u64::MAX]));
        for (dt, shape, data, needle) in [
            (
                "INT64",
                vec![2, 2],
                json!([1, 2, 3]),
                "needs 4 elements, got 3",
            ),
            ("INT8", vec![1], json!([300]), "not a valid INT8"),
            ("UINT8", vec![1], json!([-1]), "not a valid UINT8"),
            ("FP32", vec![1], json!(["a"]), "not a valid FP32"),
            ("INT32", vec![-1], json!([]), "negative dimension"),
            ("BYTES", vec![1], json!([1]), "not a string"),
            ("FLOAT", vec![1], json!([1]), "unknown datatype"),
        ] {
            let err = from_json(input(dt, shape, data)).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("inputs.x"));
            assert!(
                err.message.contains(needle) && err.message.contains("\"x\""),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn half_precision_and_bytes_convert_from_and_to_json() {
        let t = from_json(input("FP16", vec![3], json!([1.0, -2.5, 0.1]))).unwrap();
        assert_eq!(t.data, TensorData::F16(vec![0x3c00, 0xc100, 0x2e66]));
        let back = to_json(&t);
        assert_eq!(back.datatype, "FP16");
        assert_eq!(back.data[1], json!(-2.5));
        assert!((back.data[2].as_f64().unwrap() - 0.1).abs() < 1e-4);
        let t = from_json(input("BF16", vec![1], json!([1.0]))).unwrap();
        assert_eq!(t.data, TensorData::BF16(vec![0x3f80]));
        let t = from_json(input("BYTES", vec![2], json!(["héllo", ""]))).unwrap();
        assert_eq!(
            t.data,
            TensorData::Bytes(vec!["héllo".as_bytes().to_vec(), vec![]])
        );
        assert_eq!(to_json(&t).data, json!(["héllo", ""]));
    }

    #[test]
    fn binary_tensor_data_decodes_in_order_and_round_trips() {
        let tensors = [
            NamedTensor {
                name: "a".into(),
                shape: vec![2, 2],
                data: TensorData::I64(vec![1, -2, 3, i64::MAX]),
            },
            NamedTensor {
                name: "b".into(),
                shape: vec![3],
                data: TensorData::Bytes(vec![b"x".to_vec(), vec![0xff, 0], vec![]]),
            },
            NamedTensor {
                name: "c".into(),
                shape: vec![2],
                data: TensorData::F16(vec![0x3c00, 0x7c00]),
            },
            NamedTensor {
                name: "d".into(),
                shape: vec![3],
                data: TensorData::Bool(vec![true, false, true]),
            },
        ];
        let mut body = Vec::new();
        let mut described = Vec::new();
        for t in &tensors {
            let (d, bytes) = to_binary(t);
            assert_eq!(d.parameters["binary_data_size"], json!(bytes.len()));
            body.extend(bytes);
            described.push(d);
        }
        // BYTES: 4-byte little-endian length before each element.
        assert_eq!(
            to_raw(&tensors[1].data),
            b"\x01\0\0\0x\x02\0\0\0\xff\0\0\0\0\0"
        );
        let mut rest = &body[..];
        for (d, t) in described.into_iter().zip(&tensors) {
            assert_eq!(&decode_input(d, &mut rest).unwrap(), t);
        }
        assert!(rest.is_empty());

        // Too few bytes for the shape, a size beyond the body, a truncated BYTES element.
        let mut short = to_binary(&tensors[0]).0;
        short.parameters["binary_data_size"] = json!(8);
        let err = decode_input(short, &mut &[0u8; 8][..]).unwrap_err();
        assert!(err.message.contains("need 32 bytes"), "{}", err.message);
        let err = decode_input(to_binary(&tensors[0]).0, &mut &[0u8; 4][..]).unwrap_err();
        assert!(err.message.contains("only 4 bytes"), "{}", err.message);
        let (d, _) = to_binary(&tensors[1]);
        let mut d2 = d.clone();
        d2.parameters["binary_data_size"] = json!(6);
        let err = decode_input(d2, &mut &b"\x09\0\0\0ab"[..]).unwrap_err();
        assert!(err.message.contains("says 9 bytes"), "{}", err.message);
        assert_eq!(err.param.as_deref(), Some("inputs.b"));
        let mut no_data = d;
        no_data.parameters.clear();
        let err = from_json(no_data).unwrap_err();
        assert!(err.message.contains("neither data"), "{}", err.message);
    }

    #[test]
    fn the_json_header_is_split_from_binary_data_and_outputs_say_how_they_want_it() {
        let body = b"{\"x\":1}RAW";
        assert_eq!(
            split_body(body, Some("7")).unwrap(),
            (&b"{\"x\":1}"[..], &b"RAW"[..])
        );
        assert_eq!(split_body(body, None).unwrap().1, b"");
        assert!(split_body(body, Some("99"))
            .unwrap_err()
            .message
            .contains("only 10 bytes"));
        assert!(split_body(body, Some("x")).is_err());
        let req: InferBody = serde_json::from_value(json!({
            "parameters": {"binary_data_output": true},
            "inputs": [],
            "outputs": [{"name": "a", "parameters": {"binary_data": false}}, {"name": "b"}]
        }))
        .unwrap();
        assert!(!req.wants_binary("a") && req.wants_binary("b") && req.wants_binary("c"));
        let req: InferBody = serde_json::from_value(json!({"inputs": []})).unwrap();
        assert!(!req.wants_binary("a"));
    }
}
