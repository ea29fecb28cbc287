// The new-chat page: Enter sends (Shift+Enter is a new line). A classic script at the end of the
// page, so it works before the page's modules (sidebar, shortcuts, maths) have loaded.
{
  const input = document.getElementById("composer-input");
  const form = document.getElementById("new-chat-form");
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); if (input.value.trim()) form.requestSubmit(); }
  });
}
