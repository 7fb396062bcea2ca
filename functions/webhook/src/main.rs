use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    // Configuration is read once; a bad configuration fails the cold start, not a request.
    let config = kubetempura_webhook::config::Config::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "invalid configuration; refusing to start");
    })?;
    let app = kubetempura_webhook::build_app(&config)
        .await
        .inspect_err(|e| {
            tracing::error!(error = %e, "cold start failed");
        })?;
    tracing::info!(destination = %config.destination, secrets = app.secrets.len(), max_body_bytes = app.max_body_bytes, "webhook function ready");
    run(service_fn(move |req: Request| {
        let app = app.clone();
        async move { Ok::<_, Error>(kubetempura_webhook::handler::handle(&app, req).await) }
    }))
    .await
}
