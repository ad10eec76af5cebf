//! KServe v2 (Triton) JSON tensors: the inference request and response bodies, and their
//! conversion to and from Golek's tensors. Shared by the node's `/v2` API and the `triton`
//! provider that calls a remote KServe v2 server.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::inference::{NamedTensor, TensorData};
use crate::ErrorInfo;

/// One input tensor in JSON form.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JsonTensor {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    /// Flat or nested (row-major) elements.
    pub data: Value,
}

/// A requested output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestedOutput {
    pub name: String,
}

/// `POST /v2/models/{name}/infer`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub inputs: Vec<JsonTensor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Vec<RequestedOutput>>,
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

/// Converts one JSON tensor, checking its datatype, element values and element count.
pub fn from_json(input: JsonTensor) -> Result<NamedTensor, ErrorInfo> {
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
    let mut flat = Vec::new();
    flatten(&input.data, &mut flat);
    let expected: usize = shape.iter().product();
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
    let dt = input.datatype.as_str();
    let data = match dt {
        "FP32" => TensorData::F32(floats(&flat, &name, dt)?.into_iter().map(|x| x as f32).collect()),
        "FP64" => TensorData::F64(floats(&flat, &name, dt)?),
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
        "FP16" | "BF16" | "BYTES" => {
            return Err(bad(
                &name,
                format!("datatype {dt} is not supported yet (FP32, FP64, INT8..INT64, UINT8..UINT64, BOOL are)"),
            ))
        }
        other => return Err(bad(&name, format!("unknown datatype {other:?}"))),
    };
    Ok(NamedTensor { name, shape, data })
}

/// A tensor in JSON form (flat data).
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
    };
    JsonTensor {
        name: tensor.name.clone(),
        shape: tensor.shape.iter().map(|&d| d as i64).collect(),
        datatype: tensor.data.datatype().to_string(),
        data,
    }
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
            ("BYTES", vec![1], json!(["a"]), "not supported yet"),
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
}
