mod access;
mod account;
mod admin;
mod audit;
mod break_glass;
mod demo;
mod exports;
mod init;
mod migrate;
mod policy;
mod records;
mod serve;
mod status;

use crate::cli::{Cli, Command, MfaCommand};
use crate::settings::Settings;
use std::process::ExitCode;

pub async fn dispatch(cli: Cli, settings: Settings) -> anyhow::Result<ExitCode> {
    let json = cli.global.json;
    match cli.command {
        Command::Init { admin_login } => init::run(&settings, &admin_login, json).await,
        Command::Serve { listen, insecure_http, tls_cert, tls_key, tls_client_ca, tls_client_crl } => {
            let listen = listen.unwrap_or_else(|| settings.listen.clone());
            let mut settings = settings;
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                settings.tls.cert_file = Some(cert);
                settings.tls.key_file = Some(key);
            }
            if let Some(ca) = tls_client_ca {
                settings.tls.client_ca_file = Some(ca);
            }
            if let Some(crl) = tls_client_crl {
                settings.tls.client_crl_file = Some(crl);
            }
            let insecure_http = insecure_http || settings.insecure_http;
            serve::run(&settings, &listen, insecure_http).await
        }
        Command::Demo { listen, people } => demo::run(&settings, &listen, people, json).await,
        Command::Collection(c) => admin::collection(&settings, c, json).await,
        Command::Keys(k) => admin::keys(&settings, k, json).await,
        Command::Audit(a) => audit::run(&settings, a, json).await,
        Command::Users(u) => admin::users(&settings, u, json).await,
        Command::Import { collection, file, user } => {
            records::import(&settings, &collection, file, &user.login, json).await
        }
        Command::Record(r) => records::record(&settings, r, json).await,
        Command::Search { collection, field, value, view, user } => {
            let value = match value {
                Some(v) => mamori_crypto::SecretString::new(v),
                None => records::read_search_value()?,
            };
            records::search(&settings, &collection, &field, value.expose(), &view, &user.login, json).await
        }
        Command::Subject(s) => records::subject(&settings, s, json).await,
        Command::Passwd { user } => account::passwd(&settings, &user.login).await,
        Command::Mfa(MfaCommand::Enrol { user }) => account::enrol(&settings, &user.login, json).await,
        Command::Policy(p) => policy::run(&settings, p, json).await,
        Command::BreakGlass(b) => break_glass::run(&settings, b, json).await,
        Command::Access(a) => access::run(&settings, a, json).await,
        Command::Export(e) => exports::run(&settings, e, json).await,
        Command::Shares(s) => exports::shares(s, json),
        Command::Migrate { from, to } => migrate::run(&settings, from, to, json).await,
        Command::Status => status::run(&settings, json).await,
        Command::Config { .. } => unreachable!("handled before the runtime starts"),
    }
}
