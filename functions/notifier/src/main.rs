use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    // Configuration is read once; a bad configuration fails the cold start, not a message.
    let config = kubetempura_notifier::config::Config::from_env().inspect_err(|e| {
        tracing::error!(error = %e, "invalid configuration; refusing to start");
    })?;
    let app = kubetempura_notifier::build_app(&config)
        .await
        .inspect_err(|e| {
            tracing::error!(error = %e, "cold start failed");
        })?;
    tracing::info!(queue = %config.queue_url, api = %config.api_url, app_id = app.github.app_id(), "notifier function ready");
    let app = Arc::new(app);
    run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let app = Arc::clone(&app);
        async move {
            Ok::<_, Error>(kubetempura_notifier::handler::handle(&app, event.payload).await)
        }
    }))
    .await
}
