//! The codec of every kha service: prost's, with smaller first buffers.
//! tonic gives each stream an 8 KiB encode and an 8 KiB decode buffer up
//! front; a builder's session stream lives as long as the builder is
//! connected and its messages are a few hundred bytes, so a control node
//! with a thousand builders held 16 MiB in them. The buffers still grow to
//! whatever a message needs (log chunks, cache archives).

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// First size of a stream's encode and decode buffers.
const FIRST_BUFFER: usize = 1024;
/// tonic's default: how much an encoder gathers before it yields.
const YIELD_THRESHOLD: usize = 32 * 1024;

#[derive(Debug, Clone)]
pub struct SmallCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallCodec<T, U> {
    fn default() -> Self {
        SmallCodec(std::marker::PhantomData)
    }
}

impl<T, U> Codec for SmallCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(FIRST_BUFFER, YIELD_THRESHOLD)
}
