//! The integration tests of `podtrace`, linked into one test binary (one module per
//! former test file; shared helpers in the support modules).

mod reliability_support;
mod sdk_db;
mod support;

mod analyze_mysql;
mod analyze_mysql_tls;
mod analyze_options;
mod analyze_postgres;
mod analyze_redis;
mod cli_flags;
mod cluster;
mod deploy_manifests;
mod e2e_export_all;
mod e2e_live;
mod e2e_record_pod;
mod e2e_spine_otlp;
mod max_events;
mod record_node_local;
mod reliability_corrupt;
mod reliability_hostile;
mod reliability_sigkill;
mod reliability_soak;
mod sdk_truth;
mod security_privileges;
mod security_redaction;
mod security_redaction_h2;
mod security_secrets;
mod spans_parquet;
