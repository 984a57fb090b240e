// Copy buttons: the pages work without this; it only reveals the buttons
// (hidden without JavaScript) and says in the page whether the copy worked.
// The admin loads it in <head>, the site's pages with defer: wait for the page.
function setUpCopyButtons() {
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.hidden = false;
    const status = document.getElementById("copy-status");
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
      // The accessible name keeps the visible words (WCAG "label in name").
      const name = button.getAttribute("aria-label");
      button.textContent = "Copied";
      if (name) button.setAttribute("aria-label", "Copied " + button.dataset.copy);
      setTimeout(() => {
        button.textContent = label;
        if (name) button.setAttribute("aria-label", name);
      }, 1500);
    });
  });
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", setUpCopyButtons);
} else {
  setUpCopyButtons();
}
