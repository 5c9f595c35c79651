//! `verify-restore-postgres`, `verify-restore-mariadb`.

use hort_protocol::DatabaseKind;

use super::CliError;
use super::args::DbVerifyArgs;
use super::context::Context;

pub(super) fn verify(_ctx: &Context, _kind: DatabaseKind, _args: &DbVerifyArgs) -> Result<(), CliError> {
    todo!()
}
