//! Deletes the topics earlier test and benchmark runs left on the local broker (`./dev test`
//! runs it first, as it drops their databases).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = test_support::settings();
    let dropped = test_support::drop_run_topics(&settings).await?;
    if dropped > 0 {
        eprintln!("dev: deleted {dropped} topics earlier test runs left");
    }
    Ok(())
}
