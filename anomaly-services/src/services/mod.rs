//! Each Kafka service's record handler: decoding, the stage, encoding.

pub mod feature_engineer;
