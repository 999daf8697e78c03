//! The one rule both API versions implement: `value + step`, with the errors the protos document.

use tonic::Status;

/// The step v1 always uses and v2 uses when the request leaves `step` unset.
pub const DEFAULT_STEP: i64 = 1;

/// Returns `value + step`, or the status the API promises for a bad step or an overflow.
///
/// - `step < 1` → `INVALID_ARGUMENT` (an incrementer never stands still or goes backwards);
/// - a sum beyond `i64::MAX` → `OUT_OF_RANGE`, naming both operands.
pub fn increment(value: i64, step: i64) -> Result<i64, Status> {
    if step < 1 {
        return Err(Status::invalid_argument(format!(
            "step must be at least 1 (or left unset, meaning 1), got {step}"
        )));
    }
    value.checked_add(step).ok_or_else(|| {
        Status::out_of_range(format!(
            "value {value} + step {step} overflows int64 (largest value is {})",
            i64::MAX
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn adds_the_step() {
        assert_eq!(increment(41, 1).unwrap(), 42);
        assert_eq!(increment(-5, 10).unwrap(), 5);
        assert_eq!(increment(i64::MIN, 1).unwrap(), i64::MIN + 1);
        assert_eq!(increment(i64::MAX - 3, 3).unwrap(), i64::MAX);
    }

    #[test]
    fn rejects_steps_below_one() {
        for step in [0, -1, i64::MIN] {
            let status = increment(0, step).unwrap_err();
            assert_eq!(status.code(), Code::InvalidArgument);
            assert!(status.message().contains(&step.to_string()));
        }
    }

    #[test]
    fn overflow_is_out_of_range_and_names_the_values() {
        let status = increment(i64::MAX, 1).unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange);
        assert!(status.message().contains(&i64::MAX.to_string()));
        assert_eq!(increment(1, i64::MAX).unwrap_err().code(), Code::OutOfRange);
    }
}
