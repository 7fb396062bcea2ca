use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    kubetempura_webhook::logging::init();
    // Configuration is read once; a bad configuration fails the cold start, not a request.
    let settings = kubetempura_webhook::config::Config::from_env()
        .and_then(|config| Ok((config, kubetempura_webhook::aws::AwsSettings::from_env()?)));
    let (config, aws) = match settings {
        Ok(settings) => settings,
        Err(e) => {
            tracing::error!(error = %e, "invalid configuration; refusing to start");
            kubetempura_webhook::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    let app = match kubetempura_webhook::build_app(&config, &aws).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "cold start failed");
            kubetempura_webhook::report_init_error(&e).await;
            return Err(e.into());
        }
    };
    tracing::info!(destination = %config.destination, secrets = app.secrets.len(), max_body_bytes = app.max_body_bytes, "webhook function ready");
    // Every invocation borrows the one App: nothing (secrets, clients) is copied per request.
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(kubetempura_webhook::handler::handle(app, req).await)
    }))
    .await
}
