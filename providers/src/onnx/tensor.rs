//! Conversions between Golek's tensors and ONNX Runtime values.

use golek_protocol::inference::{NamedTensor, TensorData};
use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};

use crate::{ProviderError, Result, TensorSpec};

/// The KServe v2 name of an ONNX element type.
pub fn datatype_name(ty: TensorElementType) -> &'static str {
    match ty {
        TensorElementType::Float32 => "FP32",
        TensorElementType::Float64 => "FP64",
        TensorElementType::Float16 => "FP16",
        TensorElementType::Bfloat16 => "BF16",
        TensorElementType::Int8 => "INT8",
        TensorElementType::Int16 => "INT16",
        TensorElementType::Int32 => "INT32",
        TensorElementType::Int64 => "INT64",
        TensorElementType::Uint8 => "UINT8",
        TensorElementType::Uint16 => "UINT16",
        TensorElementType::Uint32 => "UINT32",
        TensorElementType::Uint64 => "UINT64",
        TensorElementType::Bool => "BOOL",
        TensorElementType::String => "BYTES",
        _ => "UNSUPPORTED",
    }
}

/// Describes a model input or output.
pub fn spec(name: &str, ty: &ValueType) -> TensorSpec {
    match ty {
        ValueType::Tensor { ty, shape, .. } => TensorSpec {
            name: name.to_string(),
            datatype: datatype_name(*ty).to_string(),
            shape: shape.iter().copied().collect(),
        },
        _ => TensorSpec {
            name: name.to_string(),
            datatype: "UNSUPPORTED".to_string(),
            shape: vec![],
        },
    }
}

/// Checks `input` against the model's declared spec: datatype, rank and fixed dimensions.
pub fn check_input(input: &NamedTensor, spec: &TensorSpec) -> Result<()> {
    let bad = |message: String| ProviderError::BadInput {
        param: format!("inputs.{}", input.name),
        message,
    };
    if input.data.datatype() != spec.datatype {
        return Err(bad(format!(
            "tensor {:?} has datatype {}, the model expects {}",
            input.name,
            input.data.datatype(),
            spec.datatype
        )));
    }
    if input.shape.len() != spec.shape.len() {
        return Err(bad(format!(
            "tensor {:?} has shape {:?}, the model expects rank {} ({:?}, -1 is any size)",
            input.name,
            input.shape,
            spec.shape.len(),
            spec.shape
        )));
    }
    for (i, (&got, &want)) in input.shape.iter().zip(&spec.shape).enumerate() {
        if want >= 0 && got as i64 != want {
            return Err(bad(format!(
                "tensor {:?} dimension {i} is {got}, the model expects {want}",
                input.name
            )));
        }
    }
    let elements: usize = input.shape.iter().product();
    if elements != input.data.len() {
        return Err(bad(format!(
            "tensor {:?} has {} elements, its shape {:?} needs {elements}",
            input.name,
            input.data.len(),
            input.shape
        )));
    }
    Ok(())
}

fn ort_err(e: ort::Error) -> ProviderError {
    ProviderError::Inference(e.to_string())
}

/// Builds an ONNX Runtime input value from a checked tensor.
pub fn to_value(input: &NamedTensor) -> Result<SessionInputValue<'static>> {
    fn make<T>(shape: Vec<i64>, data: &[T]) -> Result<SessionInputValue<'static>>
    where
        T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
    {
        Ok(Tensor::from_array((shape, data.to_vec()))
            .map_err(ort_err)?
            .into())
    }
    let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
    match &input.data {
        TensorData::F32(v) => make(shape, v),
        TensorData::F64(v) => make(shape, v),
        TensorData::I8(v) => make(shape, v),
        TensorData::I16(v) => make(shape, v),
        TensorData::I32(v) => make(shape, v),
        TensorData::I64(v) => make(shape, v),
        TensorData::U8(v) => make(shape, v),
        TensorData::U16(v) => make(shape, v),
        TensorData::U32(v) => make(shape, v),
        TensorData::U64(v) => make(shape, v),
        TensorData::Bool(v) => make(shape, v),
        TensorData::F16(v) => make(
            shape,
            &v.iter()
                .map(|&b| half::f16::from_bits(b))
                .collect::<Vec<_>>(),
        ),
        TensorData::BF16(v) => make(
            shape,
            &v.iter()
                .map(|&b| half::bf16::from_bits(b))
                .collect::<Vec<_>>(),
        ),
        TensorData::Bytes(v) => {
            let strings = v
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    String::from_utf8(b.clone()).map_err(|_| ProviderError::BadInput {
                        param: format!("inputs.{}", input.name),
                        message: format!(
                            "tensor {:?} element {i} is not UTF-8, which ONNX string tensors need",
                            input.name
                        ),
                    })
                })
                .collect::<Result<Vec<String>>>()?;
            Ok(Tensor::from_string_array((shape, &*strings))
                .map_err(ort_err)?
                .into())
        }
    }
}

/// Reads an output value into a named tensor.
pub fn from_value(name: &str, value: &DynValue) -> Result<NamedTensor> {
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(ProviderError::Inference(format!(
                "output {name:?} is not a tensor ({other:?})"
            )))
        }
    };
    fn read<T: ort::value::PrimitiveTensorElementType + Clone>(
        value: &DynValue,
    ) -> Result<(Vec<usize>, Vec<T>)> {
        let (shape, data) = value.try_extract_tensor::<T>().map_err(ort_err)?;
        Ok((
            shape.iter().map(|&d| d.max(0) as usize).collect(),
            data.to_vec(),
        ))
    }
    let (shape, data) = match ty {
        TensorElementType::Float32 => read::<f32>(value).map(|(s, d)| (s, TensorData::F32(d)))?,
        TensorElementType::Float64 => read::<f64>(value).map(|(s, d)| (s, TensorData::F64(d)))?,
        TensorElementType::Int8 => read::<i8>(value).map(|(s, d)| (s, TensorData::I8(d)))?,
        TensorElementType::Int16 => read::<i16>(value).map(|(s, d)| (s, TensorData::I16(d)))?,
        TensorElementType::Uint16 => read::<u16>(value).map(|(s, d)| (s, TensorData::U16(d)))?,
        TensorElementType::Uint32 => read::<u32>(value).map(|(s, d)| (s, TensorData::U32(d)))?,
        TensorElementType::Uint64 => read::<u64>(value).map(|(s, d)| (s, TensorData::U64(d)))?,
        TensorElementType::Bool => read::<bool>(value).map(|(s, d)| (s, TensorData::Bool(d)))?,
        TensorElementType::Int32 => read::<i32>(value).map(|(s, d)| (s, TensorData::I32(d)))?,
        TensorElementType::Int64 => read::<i64>(value).map(|(s, d)| (s, TensorData::I64(d)))?,
        TensorElementType::Uint8 => read::<u8>(value).map(|(s, d)| (s, TensorData::U8(d)))?,
        TensorElementType::Float16 => read::<half::f16>(value)
            .map(|(s, d)| (s, TensorData::F16(d.iter().map(|h| h.to_bits()).collect())))?,
        TensorElementType::Bfloat16 => read::<half::bf16>(value)
            .map(|(s, d)| (s, TensorData::BF16(d.iter().map(|h| h.to_bits()).collect())))?,
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(ort_err)?;
            (
                shape.iter().map(|&d| d.max(0) as usize).collect(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(ProviderError::Inference(format!(
                "output {name:?} has datatype {}, which Golek cannot return yet",
                datatype_name(other)
            )))
        }
    };
    Ok(NamedTensor {
        name: name.to_string(),
        shape,
        data,
    })
}
