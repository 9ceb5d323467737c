use super::*;

#[test]
fn start_errors_round_trip_through_the_pipe_format() {
    let e = StartError {
        code: 127,
        message: "exec: \"x\": executable file not found in $PATH".into(),
    };
    assert_eq!(StartError::decode(&e.encode()), e);
    assert_eq!(StartError::decode(b"garbage").code, EXIT_SETUP_FAILED);
}
