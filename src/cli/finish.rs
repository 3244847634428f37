//! The arguments of `ddb2pg finish`, the s3:// checkpoint dir options it shares with
//! `status`, and `migrate --caught-up-lag`'s parser.

use std::path::PathBuf;

use clap::Args;

use super::AwsArgs;

pub(super) const FINISH_EXAMPLES: &str = "\
Examples:
  # The writers are stopped; let the follower apply what is left and exit:
  ddb2pg finish --checkpoint-dir checkpoints --table app
  ddb2pg finish --checkpoint-dir s3://my-bucket/ddb2pg/app --table app
  # Locally, the same with a signal:
  kill -USR1 <pid of the follower>

The follower looks for the request twice a second (every 5 s on S3), logs \"finish requested\",
then exits as with --until-caught-up: 0 once caught up, 4 if its run rejected changes (they
are in the rejects file). A request made before the follower started is removed, not honoured.
Exit codes: 0 requested, 2 no such follower running (or the checkpoint does not follow).";

/// How an s3:// --checkpoint-dir is reached, for commands that only read or write beside it.
#[derive(Debug, Clone, Args)]
pub struct S3DirArgs {
    /// S3 endpoint for an s3:// --checkpoint-dir (an S3-compatible server)
    /// [env: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL]
    #[arg(long, value_name = "URL")]
    pub s3_endpoint_url: Option<String>,

    /// AWS region of an s3:// --checkpoint-dir (default: from the profile or AWS_REGION)
    #[arg(long)]
    pub region: Option<String>,

    /// Named AWS profile for an s3:// --checkpoint-dir
    #[arg(long)]
    pub profile: Option<String>,
}

impl S3DirArgs {
    /// The AWS settings of the S3 client (no DynamoDB endpoint).
    pub fn aws(&self) -> AwsArgs {
        AwsArgs {
            endpoint_url: None,
            region: self.region.clone(),
            profile: self.profile.clone(),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct FinishArgs {
    /// Directory holding the follower's checkpoint (or the checkpoint file), or s3://bucket/prefix
    #[arg(long, value_name = "DIR|S3URL", default_value = "checkpoints")]
    pub checkpoint_dir: PathBuf,

    /// The followed table (its checkpoint is found by name in --checkpoint-dir)
    #[arg(long, value_name = "NAME")]
    pub table: Option<String>,

    #[command(flatten)]
    pub s3: S3DirArgs,
}

/// `--caught-up-lag`: seconds, finite, 0 to one hour.
pub(super) fn caught_up_lag(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && (0.0..=3600.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{s}: expected 0 to 3600 seconds"))
    }
}
