//! The baseline of the cold-start benchmark (BENCHMARKS.md, `make bench-coldstart`): the
//! smallest lambda_http function, with the webhook function's lambda_http features and built
//! with its profile, answering every request `hello`.

use lambda_http::{Body, Error, Request, Response, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_: Request| async {
        Ok::<_, Error>(Response::new(Body::Text("hello".to_owned())))
    }))
    .await
}
