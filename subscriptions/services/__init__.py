"""Every write on subscriptions: `lifecycle` (create, cancel, reactivate, change, end), `status` (the one
function that changes a status, and the snapshot every event carries), `renewal` (periods ending, in
batches), `preview` (the upcoming invoice), and the invoice builder they share (`builder`, `context`)."""
