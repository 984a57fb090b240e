// Copy buttons: the pages work without this; it only reveals the buttons
// (hidden without JavaScript) and says in the page whether the copy worked.
document.querySelectorAll("[data-copy]").forEach((button) => {
  button.hidden = false;
  const status = document.getElementById(button.dataset.copyStatus || "copy-status");
  const label = button.textContent;
  button.addEventListener("click", async () => {
    let message;
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      message = "Copied " + button.dataset.copy;
    } catch (error) {
      message = "Could not copy: select the link and copy it yourself.";
    }
    if (status) {
      status.textContent = message;
    } else {
      button.title = message;
    }
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });
});
