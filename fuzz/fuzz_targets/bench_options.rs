// nvme-bench is a binary crate with no [lib]: its option parser is
// compiled into the fuzz targets as source (#[path]), unchanged, with the
// `crate::error` and `crate::expr` modules it uses. No code in nvme-bench
// changes for this.
#[path = "../../nvme-bench/src/error.rs"]
#[allow(dead_code)]
mod error;
#[path = "../../nvme-bench/src/expr.rs"]
#[allow(dead_code, clippy::all)]
mod expr;
#[path = "../../nvme-bench/src/logs.rs"]
#[allow(dead_code, clippy::all)]
mod logs;
#[path = "../../nvme-bench/src/options.rs"]
#[allow(dead_code, clippy::all)]
pub mod options;
