//! Carries the `proto` frames over std streams (sockets, serial ports).

/// Adapts a std `Read + Write` to `embedded_io`.
#[derive(Debug)]
pub struct Stream<T>(pub T);

impl<T> embedded_io::ErrorType for Stream<T> {
    type Error = embedded_io::ErrorKind;
}

impl<T: std::io::Read> embedded_io::Read for Stream<T> {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        loop {
            match self.0.read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return Err(embedded_io::ErrorKind::Other),
            }
        }
    }
}

impl<T: std::io::Write> embedded_io::Write for Stream<T> {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.0.write(buf).map_err(|_| embedded_io::ErrorKind::Other)
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        self.0.flush().map_err(|_| embedded_io::ErrorKind::Other)
    }
}
