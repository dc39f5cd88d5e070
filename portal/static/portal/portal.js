// The portal's only script (served from here, no CDN). Without it every form still works; with it:
// - a form marked data-once disables its buttons once sent, so a double click sends it once (the server
//   also records each form's nonce and acts once whatever the browser does);
// - data-confirm asks before sending;
// - where Stripe is the processor (data-stripe / #stripe-next-action), Stripe.js collects the card and
//   completes the payment's next_action (3-D Secure), then comes back to the page.
(function () {
  "use strict";
  document.querySelectorAll("form[data-once]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (form.dataset.sent) {
        event.preventDefault();
        return;
      }
      if (form.dataset.stripe !== undefined && !form.dataset.stripeReady) {
        return; // the Stripe handler below sends the form once it has a payment method
      }
      form.dataset.sent = "1";
      var submitter = event.submitter;
      if (submitter && submitter.name) {
        var keep = document.createElement("input");
        keep.type = "hidden";
        keep.name = submitter.name;
        keep.value = submitter.value;
        form.appendChild(keep);
      }
      form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
    });
  });

  if (typeof window.Stripe !== "function") return;

  var action = document.getElementById("stripe-next-action");
  if (action) {
    var stripeForAction = window.Stripe(action.dataset.key);
    stripeForAction.handleNextAction({ clientSecret: action.dataset.clientSecret }).then(function () {
      window.location.assign(action.dataset.return);
    });
  }

  document.querySelectorAll("form[data-stripe]").forEach(function (form) {
    if (!form.dataset.stripe) return;
    var stripe = window.Stripe(form.dataset.stripe);
    var card = stripe.elements().create("card");
    card.mount(form.querySelector("#card-element"));
    var errors = form.querySelector("#card-errors");
    form.addEventListener("submit", function (event) {
      if (form.dataset.stripeReady) return;
      event.preventDefault();
      form.querySelectorAll("button").forEach(function (button) { button.disabled = true; });
      stripe.createPaymentMethod({ type: "card", card: card }).then(function (result) {
        if (result.error) {
          errors.textContent = result.error.message;
          errors.hidden = false;
          form.querySelectorAll("button").forEach(function (button) { button.disabled = false; });
          return;
        }
        form.querySelector("input[name=token]").value = result.paymentMethod.id;
        form.dataset.stripeReady = "1";
        form.dataset.sent = "1";
        form.submit();
      });
    });
  });
})();
